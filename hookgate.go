// Package hookgate holds the domain types that every part of the gateway
// shares: the event envelope, the exchange record written to history, error
// codes and secrets. It imports nothing of ours.
package hookgate

import (
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Version is the gateway's version, set at build time with
// -ldflags "-X github.com/hookgate/hookgate.Version=...".
var Version = "dev"

// Direction says which way an exchange went.
type Direction uint8

// Directions, numbered as the ClickHouse Enum8 of exchanges.direction.
const (
	Inbound  Direction = 1
	Outbound Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "unknown"
}

// ParseDirection reads a direction by name or Enum8 number; 0 if neither.
func ParseDirection(s string) Direction {
	switch s {
	case "inbound", "1":
		return Inbound
	case "outbound", "2":
		return Outbound
	}
	return 0
}

// Outcomes of an exchange, as stored in exchanges.outcome.
const (
	OutcomeAccepted  = "accepted"  // inbound, stored on the bus
	OutcomeDuplicate = "duplicate" // inbound, already stored
	OutcomeRejected  = "rejected"  // inbound, answered 4xx/5xx
	OutcomeOK        = "ok"        // outbound attempt succeeded
	OutcomeRetry     = "retry"     // outbound attempt failed, another follows
	OutcomeFailed    = "failed"    // outbound attempt failed for good
	OutcomeDead      = "dead"      // outbound job dead-lettered after its last attempt
	// OutcomeSuppressed is a delivery not made: the Bitrix24 event is the
	// echo of hookgate's own write (docs/sync.md).
	OutcomeSuppressed = "suppressed"
)

// Exchange is one row of hookgate.exchanges: an inbound request or one
// outbound attempt. Its fields are the table's columns.
type Exchange struct {
	TS             time.Time `json:"ts"`
	ExchangeID     string    `json:"exchange_id"`
	EventID        string    `json:"event_id"`
	Direction      Direction `json:"direction"`
	Source         string    `json:"source"`
	Provider       string    `json:"provider"`
	Event          string    `json:"event"`
	Operation      string    `json:"operation"`
	HTTPMethod     string    `json:"http_method"`
	URL            string    `json:"url"`
	Status         uint16    `json:"status"`
	Outcome        string    `json:"outcome"`
	Error          string    `json:"error"`
	Attempt        uint16    `json:"attempt"`
	DurationMS     float32   `json:"duration_ms"`
	RequestHeaders string    `json:"request_headers"`
	RequestBody    string    `json:"request_body"`
	ResponseBody   string    `json:"response_body"`
	RemoteAddr     string    `json:"remote_addr"`
}

// Recorder takes exchanges for history. Record must not block on I/O: it is
// called on the request path.
type Recorder interface {
	Record(Exchange)
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
// (google/uuid; the hand-written one before it was 60 ns faster a call,
// 0.1 % of a request's CPU: docs/performance.md.)
func NewUUID() string { return uuid.NewString() }

// Truncate keeps at most max bytes of s, cut before a UTF-8 character
// rather than inside one, and appends a marker naming the bytes left out:
// "…[truncated 34464 bytes]". max <= 0 means no limit. The history writer
// applies it once to each row (history.max_body_bytes).
func Truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…[truncated " + strconv.Itoa(len(s)-cut) + " bytes]"
}
