package dashboards

import (
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
)

// The traffic the dashboards are checked against. seed records it through
// a hookgate.Recorder (the history writer) and returns every row it
// recorded; the checks compute their expected numbers from those rows.
//
// Today seed records the rows the gateway, the Bitrix24 client and the
// deliveries write for this traffic (their shapes follow gateway's row,
// outbound.Bitrix24's attempt rows and outbound/delivery's rows). To drive real traffic instead, start the
// gateway with rec as its history Recorder, send the requests, and return
// capture.Rows(): the checks need nothing else.

// Event ids of the routed story, for the trace checks.
type story struct {
	Delivered  string // E2: call retried (QUERY_LIMIT_EXCEEDED), delivery retried (502), then delivered
	Dead       string // E3: call ok, delivery timed out, 503, dead-lettered
	Retrying   string // E4: call hit OPERATION_TIME_LIMIT then the open breaker; waiting
	Failed     string // E5: call ok, delivery refused for good (410 Gone)
	Unrouted   string // E7: accepted, no route: no outbound rows
	Echo       string // E8: call ok, delivery suppressed (the echo of hookgate's own write)
	RecentBase time.Time
}

// capture is a Recorder that keeps every row it passes on.
type capture struct {
	next hookgate.Recorder
	mu   sync.Mutex
	rows []hookgate.Exchange
}

func (c *capture) Record(x hookgate.Exchange) {
	c.mu.Lock()
	c.rows = append(c.rows, x)
	c.mu.Unlock()
	if c.next != nil {
		c.next.Record(x)
	}
}

// Rows returns what was recorded.
func (c *capture) Rows() []hookgate.Exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]hookgate.Exchange(nil), c.rows...)
}

// seed records the test traffic into rec and returns the rows recorded and
// the ids of the events the checks follow. now is the test's clock: the
// recent traffic lies in the hour that started three hours before now's
// hour, one row every 37 seconds (distinct seconds, so that ordering by ts
// is unambiguous on a DateTime column too); a baseline lies three days
// back, for the rising-rejection query and to prove the time filters.
func seed(t *testing.T, rec hookgate.Recorder, now time.Time) ([]hookgate.Exchange, story) {
	t.Helper()
	c := &capture{next: rec}
	base := now.UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	k := 0
	next := func() time.Time { k++; return base.Add(time.Duration(k*37) * time.Second) }

	in := func(ts time.Time, source, provider, event, eventID, outcome, code string, status uint16, ms float32) {
		path := "/webhook/" + source
		if provider == "apikey" {
			path = "/webhooks/[redacted]"
		}
		if source == "" {
			path = "/webhook/nosuch"
		}
		c.Record(hookgate.Exchange{
			TS: ts, ExchangeID: hookgate.NewUUID(), EventID: eventID, Direction: hookgate.Inbound,
			Source: source, Provider: provider, Event: event, HTTPMethod: "POST", URL: path,
			Status: status, Outcome: outcome, Error: code, Attempt: 1, DurationMS: ms,
			RequestHeaders: "Content-Type: application/x-www-form-urlencoded\n",
			RequestBody:    "event=" + event + "&auth[application_token]=[redacted]",
			ResponseBody:   `{"status":"` + outcome + `","id":"` + eventID + `"}`,
			RemoteAddr:     "203.0.113.7",
		})
	}
	call := func(eventID, method, outcome, code string, status, attempt uint16, ms float32) {
		c.Record(hookgate.Exchange{
			TS: next(), ExchangeID: hookgate.NewUUID(), EventID: eventID, Direction: hookgate.Outbound,
			Source: "main", Provider: "bitrix24", Operation: method, HTTPMethod: "POST",
			URL:    "https://example.bitrix24.com/rest/1/[redacted]/" + method + ".json",
			Status: status, Outcome: outcome, Error: code, Attempt: attempt, DurationMS: ms,
			RequestBody: "id=9", ResponseBody: `{"result":{"ID":"9"}}`,
		})
	}
	deliver := func(eventID, dest, outcome, code string, status, attempt uint16, ms float32) {
		event := map[string]string{"deal-sync": "ONCRMDEALADD", "landing-forward": "Lead"}[dest]
		c.Record(hookgate.Exchange{
			TS: next(), ExchangeID: hookgate.NewUUID(), EventID: eventID, Direction: hookgate.Outbound,
			Source: dest, Provider: "http", Event: event, Operation: "deliver", HTTPMethod: "POST",
			URL:    "https://platform.example.com/hooks/" + dest,
			Status: status, Outcome: outcome, Error: code, Attempt: attempt, DurationMS: ms,
			RequestHeaders: "webhook-signature: [redacted]\n", RequestBody: `{"deal":{"ID":"9"}}`,
		})
	}
	b24 := func(eventID, outcome, code string, status uint16, ms float32) {
		in(next(), "bitrix24-deals", "bitrix24", "ONCRMDEALADD", eventID, outcome, code, status, ms)
	}
	landing := func(eventID, outcome, code string, status uint16, ms float32) {
		in(next(), "landing", "apikey", "Lead", eventID, outcome, code, status, ms)
	}
	ci := func(eventID, outcome, code string, status uint16, ms float32) {
		in(next(), "ci", "token", "ci.build.finished", eventID, outcome, code, status, ms)
	}
	ok, dup, rej := hookgate.OutcomeAccepted, hookgate.OutcomeDuplicate, hookgate.OutcomeRejected

	e := make([]string, 9)
	for i := range e {
		e[i] = hookgate.NewUUID()
	}
	s := story{Delivered: e[2], Dead: e[3], Retrying: e[4], Failed: e[5], Unrouted: e[7], Echo: e[8], RecentBase: base}

	// E1: the happy path, redelivered once by Bitrix24.
	b24(e[1], ok, "", 200, 4)
	call(e[1], "crm.deal.get", "ok", "", 200, 1, 120)
	deliver(e[1], "deal-sync", "ok", "", 200, 1, 40)
	// E2: retries that heal.
	b24(e[2], ok, "", 200, 6)
	call(e[2], "crm.deal.get", "retry", "QUERY_LIMIT_EXCEEDED", 503, 1, 30)
	b24(e[1], dup, "", 200, 2)
	call(e[2], "crm.deal.get", "ok", "", 200, 2, 150)
	deliver(e[2], "deal-sync", "retry", "http_502", 502, 1, 25)
	b24(e[2], dup, "", 200, 3)
	deliver(e[2], "deal-sync", "ok", "", 200, 2, 45)
	// E3: the delivery dies.
	b24(e[3], ok, "", 200, 5)
	call(e[3], "crm.deal.get", "ok", "", 200, 1, 110)
	deliver(e[3], "deal-sync", "retry", "timeout", 0, 1, 5000)
	deliver(e[3], "deal-sync", "retry", "http_503", 503, 2, 35)
	deliver(e[3], "deal-sync", "dead", "http_503", 503, 3, 30)
	b24("", rej, "invalid_token", 401, 1)
	// E4: Bitrix24's limits, then the breaker: still waiting.
	b24(e[4], ok, "", 200, 7)
	call(e[4], "crm.deal.get", "retry", "OPERATION_TIME_LIMIT", 429, 1, 20)
	call(e[4], "crm.deal.get", "retry", "circuit_open", 0, 2, 0)
	// E5, E6: a landing page's leads; E5's delivery is refused for good
	// (410 Gone: outbound/delivery's one permanent answer).
	landing(e[5], ok, "", 200, 9)
	call(e[5], "crm.lead.add", "ok", "", 200, 1, 300)
	deliver(e[5], "landing-forward", "failed", "gone", 410, 1, 15)
	landing("", rej, "body_too_large", 413, 1)
	landing(e[6], ok, "", 200, 8)
	deliver(e[6], "landing-forward", "ok", "", 200, 1, 50)
	landing("", rej, "body_too_large", 413, 1)
	landing("", rej, "invalid_token", 401, 2)
	// E7: CI, no route; then a broken CI token.
	ci(e[7], ok, "", 200, 10)
	for range 3 {
		ci("", rej, "invalid_token", 401, 1)
	}
	// E8: the echo of hookgate's own write: enriched, not delivered
	// (routes/echo.go), and not an undelivered event.
	b24(e[8], ok, "", 200, 4)
	call(e[8], "crm.deal.get", "ok", "", 200, 1, 100)
	deliver(e[8], "deal-sync", hookgate.OutcomeSuppressed, "echo", 0, 1, 0)
	// Nobody's source.
	in(next(), "", "", "", "", rej, "unknown_source", 404, 1)

	// Baseline, three days back: outside the dashboards' range, inside the
	// library's 8-day window.
	old := now.UTC().Add(-72 * time.Hour)
	j := 0
	at := func() time.Time { j++; return old.Add(time.Duration(j*13) * time.Second) }
	for range 10 {
		in(at(), "bitrix24-deals", "bitrix24", "ONCRMDEALADD", hookgate.NewUUID(), ok, "", 200, 5)
	}
	for range 9 {
		in(at(), "landing", "apikey", "Lead", hookgate.NewUUID(), ok, "", 200, 5)
	}
	in(at(), "landing", "apikey", "Lead", "", rej, "invalid_token", 401, 1)
	in(at(), "ci", "token", "ci.build.finished", hookgate.NewUUID(), ok, "", 200, 5)
	for range 3 {
		in(at(), "ci", "token", "ci.build.finished", "", rej, "invalid_token", 401, 1)
	}
	return c.Rows(), s
}
