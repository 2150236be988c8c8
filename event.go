package hookgate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event is the CloudEvents 1.0 envelope of an accepted inbound call, as
// published on hookgate.in.<source_id>.<event>.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	// TraceParent and TraceState are the W3C trace context of the span
	// that stored the event, as the CloudEvents distributed-tracing
	// extension carries them; empty when tracing is off.
	TraceParent string    `json:"traceparent,omitempty"`
	TraceState  string    `json:"tracestate,omitempty"`
	Data        EventData `json:"data"`
}

// EventData is the payload of an Event, in Citeck's shape.
type EventData struct {
	WebhookID   string            `json:"webhookId"`
	Provider    string            `json:"provider"`
	Event       string            `json:"event"`
	Params      map[string]string `json:"params"`
	Body        string            `json:"body"`
	JSON        json.RawMessage   `json:"json,omitempty"`
	ContentType string            `json:"contentType"`
	Headers     map[string]string `json:"headers"`
}

// EventID derives a stable event id (a name-based, version 5 style UUID) from
// a source and the provider's de-duplication key, so that a redelivered
// webhook carries the same id as the first delivery.
func EventID(source, dedupKey string) string {
	h := sha256.Sum256([]byte("hookgate/" + source + "\x00" + dedupKey))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

// InboundSubject is the bus subject of an event: hookgate.in.<source>.<event>,
// each part made subject-safe.
func InboundSubject(source, event string) string {
	return "hookgate.in." + SubjectToken(source) + "." + SubjectToken(event)
}

// MaxSubjectToken is the longest subject token hookgate makes, in bytes.
// NATS refuses a protocol line over 4 KiB and closes the connection that
// sent it, so neither a source id nor an event name (chosen by a webhook's
// sender) may make a subject of any length: a longer token is cut and
// ends with a hash of the whole name, which keeps distinct names apart.
// The CloudEvent keeps the full event name.
const MaxSubjectToken = 128

// subjectHashLen is the length of the "_<16 hex digits>" suffix of a cut
// token.
const subjectHashLen = 17

// SubjectToken turns s into one NATS subject token: characters other than
// letters, digits, '-' and '_' become '_'; an empty string becomes "_". A
// name over MaxSubjectToken bytes becomes its first 111 bytes, made safe,
// followed by '_' and the first 16 hex digits of its SHA-256: at most
// MaxSubjectToken bytes.
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	ok := len(s) <= MaxSubjectToken
	for i := 0; ok && i < len(s); i++ {
		ok = subjectSafe(s[i])
	}
	if ok {
		return s
	}
	keep := min(len(s), MaxSubjectToken)
	if len(s) > MaxSubjectToken {
		keep = MaxSubjectToken - subjectHashLen
	}
	b := make([]byte, 0, MaxSubjectToken)
	for i := 0; i < keep; i++ {
		if c := s[i]; subjectSafe(c) {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	if len(s) > MaxSubjectToken {
		h := sha256.Sum256([]byte(s))
		b = append(b, '_')
		b = hex.AppendEncode(b, h[:8])
	}
	return string(b)
}

func subjectSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
