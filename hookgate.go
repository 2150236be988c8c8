// Package hookgate holds the domain types that every part of the gateway
// shares: the event envelope, the exchange record written to history, error
// codes and secrets. It imports nothing of ours.
package hookgate

import (
	"crypto/rand"
	"encoding/hex"
	"time"
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
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hookgate: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Truncate cuts s to at most max bytes (on a UTF-8 boundary) and marks the
// cut with the number of bytes left out. max <= 0 means no limit.
func Truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…[truncated " + itoa(len(s)-cut) + " bytes]"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
