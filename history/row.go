package history

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hookgate/hookgate"
)

var errBadRow = errors.New("history: bad row")

// normalize fills what a row builder may leave empty (exchange_id, ts,
// attempt) and checks what ClickHouse would refuse, so that one bad row
// never poisons a whole batch.
func normalize(x *hookgate.Exchange, now func() time.Time) error {
	if x.TS.IsZero() {
		x.TS = now()
	}
	x.TS = x.TS.UTC()
	if x.ExchangeID == "" {
		x.ExchangeID = hookgate.NewUUID()
	} else if !validUUID(x.ExchangeID) {
		return fmt.Errorf("%w: exchange_id %q is not a UUID", errBadRow, x.ExchangeID)
	}
	if x.Direction != hookgate.Inbound && x.Direction != hookgate.Outbound {
		return fmt.Errorf("%w: direction %d", errBadRow, x.Direction)
	}
	if math.IsNaN(float64(x.DurationMS)) || math.IsInf(float64(x.DurationMS), 0) {
		x.DurationMS = 0
	}
	if x.Attempt == 0 {
		x.Attempt = 1
	}
	if y := x.TS.Year(); y < 1971 || y > 2105 {
		// DateTime's range; DateTime64 is wider but old servers share the rows.
		return fmt.Errorf("%w: ts %s out of range", errBadRow, x.TS)
	}
	return nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// clean applies the last-line redaction and truncation to a row's free-text
// columns.
func clean(x *hookgate.Exchange, redact func(string) string, maxBody int) {
	if redact != nil {
		x.URL = redact(x.URL)
		x.RequestHeaders = redact(x.RequestHeaders)
		x.RequestBody = redact(x.RequestBody)
		x.ResponseBody = redact(x.ResponseBody)
		x.Error = redact(x.Error)
	}
	x.RequestHeaders = hookgate.Truncate(x.RequestHeaders, maxBody)
	x.RequestBody = hookgate.Truncate(x.RequestBody, maxBody)
	x.ResponseBody = hookgate.Truncate(x.ResponseBody, maxBody)
	x.URL = hookgate.Truncate(x.URL, maxBody)
}

// rowSize estimates a row's memory, for the queue's byte bound.
func rowSize(x *hookgate.Exchange) int64 {
	return int64(200 + len(x.EventID) + len(x.Source) + len(x.Provider) + len(x.Event) +
		len(x.Operation) + len(x.HTTPMethod) + len(x.URL) + len(x.Outcome) + len(x.Error) +
		len(x.RequestHeaders) + len(x.RequestBody) + len(x.ResponseBody) + len(x.RemoteAddr))
}
