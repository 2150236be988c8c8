package hookgate

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
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
	Data            EventData `json:"data"`
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

// SubjectToken turns s into one NATS subject token: characters other than
// letters, digits, '-' and '_' become '_'; an empty string becomes "_".
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if !subjectSafe(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if subjectSafe(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func subjectSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
