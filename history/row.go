package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/hookgate/hookgate"
)

// TimeLayout is the text form of ts in NDJSON files: what a DateTime column
// of ClickHouse 18.16 reads in JSONEachRow (no fraction), in UTC. Modern
// servers read it into DateTime64(3) too.
const TimeLayout = "2006-01-02 15:04:05"

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

// jsonRow is one row of an NDJSON history file: the table's columns by name,
// each in the form ClickHouse's JSONEachRow reads (ts as UTC text, direction
// as the Enum8 name).
type jsonRow struct {
	TS             string  `json:"ts"`
	ExchangeID     string  `json:"exchange_id"`
	EventID        string  `json:"event_id"`
	Direction      string  `json:"direction"`
	Source         string  `json:"source"`
	Provider       string  `json:"provider"`
	Event          string  `json:"event"`
	Operation      string  `json:"operation"`
	HTTPMethod     string  `json:"http_method"`
	URL            string  `json:"url"`
	Status         uint16  `json:"status"`
	Outcome        string  `json:"outcome"`
	Error          string  `json:"error"`
	Attempt        uint16  `json:"attempt"`
	DurationMS     float32 `json:"duration_ms"`
	RequestHeaders string  `json:"request_headers"`
	RequestBody    string  `json:"request_body"`
	ResponseBody   string  `json:"response_body"`
	RemoteAddr     string  `json:"remote_addr"`
}

// ParseJSONEachRow reads one line of an NDJSON history file (the inverse of
// AppendJSONEachRow). It also reads ts with a fraction or in RFC 3339 and
// direction as the Enum8 number, as ClickHouse's own JSONEachRow output
// may have them.
func ParseJSONEachRow(line []byte) (hookgate.Exchange, error) {
	var r struct {
		jsonRow
		Direction json.RawMessage `json:"direction"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return hookgate.Exchange{}, err
	}
	var ts time.Time
	var err error
	for _, layout := range []string{TimeLayout, "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if ts, err = time.ParseInLocation(layout, r.TS, time.UTC); err == nil {
			break
		}
	}
	if err != nil {
		return hookgate.Exchange{}, fmt.Errorf("unreadable ts %q", r.TS)
	}
	var dir string
	if json.Unmarshal(r.Direction, &dir) != nil {
		var n int
		if json.Unmarshal(r.Direction, &n) != nil {
			return hookgate.Exchange{}, fmt.Errorf("unreadable direction %s", r.Direction)
		}
		dir = strconv.Itoa(n)
	}
	d := hookgate.ParseDirection(dir)
	if d == 0 {
		return hookgate.Exchange{}, fmt.Errorf("unknown direction %s", r.Direction)
	}
	return hookgate.Exchange{
		TS: ts.UTC(), ExchangeID: r.ExchangeID, EventID: r.EventID, Direction: d, Source: r.Source,
		Provider: r.Provider, Event: r.Event, Operation: r.Operation, HTTPMethod: r.HTTPMethod, URL: r.URL,
		Status: r.Status, Outcome: r.Outcome, Error: r.Error, Attempt: r.Attempt, DurationMS: r.DurationMS,
		RequestHeaders: r.RequestHeaders, RequestBody: r.RequestBody, ResponseBody: r.ResponseBody,
		RemoteAddr: r.RemoteAddr,
	}, nil
}

// AppendJSONEachRow appends x as one JSONEachRow line (with its newline) of
// hookgate.exchanges to b.
func AppendJSONEachRow(b []byte, x *hookgate.Exchange) ([]byte, error) {
	r := jsonRow{
		TS: x.TS.UTC().Format(TimeLayout), ExchangeID: x.ExchangeID, EventID: x.EventID,
		Direction: x.Direction.String(), Source: x.Source, Provider: x.Provider, Event: x.Event,
		Operation: x.Operation, HTTPMethod: x.HTTPMethod, URL: x.URL, Status: x.Status,
		Outcome: x.Outcome, Error: x.Error, Attempt: x.Attempt, DurationMS: x.DurationMS,
		RequestHeaders: x.RequestHeaders, RequestBody: x.RequestBody, ResponseBody: x.ResponseBody,
		RemoteAddr: x.RemoteAddr,
	}
	j, err := json.Marshal(&r)
	if err != nil {
		return b, err
	}
	b = append(b, j...)
	return append(b, '\n'), nil
}
