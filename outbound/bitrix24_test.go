package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// recorder collects history rows.
type recorder struct {
	mu   sync.Mutex
	rows []hookgate.Exchange
}

func (r *recorder) Record(x hookgate.Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, x)
}

func (r *recorder) all() []hookgate.Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookgate.Exchange(nil), r.rows...)
}

// fakeClock is shared by the client (waits) and the simulator (now): a
// wait moves time forward at once and is remembered.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_778_747_192, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

func staticSecret(s string) SecretFunc {
	return func(context.Context) (hookgate.Secret, error) { return hookgate.Secret(s), nil }
}

var unlimited = &config.Rate{PerSecond: -1}

// setup starts sim and returns a client of it with an unlimited bucket
// unless p sets one.
func setup(t *testing.T, sim *bitrix24test.Server, p config.Portal, opts ...Option) *Bitrix24 {
	t.Helper()
	ts := sim.Start()
	t.Cleanup(ts.Close)
	p.ID = "main"
	p.BaseURL = ts.URL
	p.UserID = 1
	if p.Rate == nil {
		p.Rate = unlimited
	}
	c, err := NewBitrix24(p, staticSecret(bitrix24test.DefaultSecret), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEncodeParams(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"nil", nil, ""},
		{"scalar", map[string]any{"id": 42}, "id=42"},
		{"nested", map[string]any{"fields": map[string]any{"TITLE": "Acme Inc", "OPPORTUNITY": 1000.5}},
			"fields%5BOPPORTUNITY%5D=1000.5&fields%5BTITLE%5D=Acme+Inc"},
		{"multi-field", map[string]any{"fields": map[string]any{"PHONE": []any{map[string]string{"VALUE": "112233", "VALUE_TYPE": "WORK"}}}},
			"fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=112233&fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK"},
		{"select list", map[string]any{"select": []string{"ID", "TITLE"}}, "select%5B0%5D=ID&select%5B1%5D=TITLE"},
		{"filter operator", map[string]any{"filter": map[string]any{">ID": 100, "!=STAGE_ID": "WON"}},
			"filter%5B%21%3DSTAGE_ID%5D=WON&filter%5B%3EID%5D=100"},
		{"order and start", map[string]any{"order": map[string]string{"ID": "ASC"}, "start": -1}, "order%5BID%5D=ASC&start=-1"},
		{"bool and nil", map[string]any{"a": true, "b": false, "c": nil, "d": []string{}}, "a=1&b=0"},
		{"reference", map[string]any{"id": "$result[add]"}, "id=%24result%5Badd%5D"},
		{"unicode", map[string]any{"fields": map[string]any{"TITLE": "Сделка & co"}}, "fields%5BTITLE%5D=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0+%26+co"},
		{"json number", map[string]any{"id": json.Number("7")}, "id=7"},
	}
	for _, tc := range tests {
		got, err := EncodeParams(tc.params)
		if err != nil || got != tc.want {
			t.Errorf("EncodeParams(%s) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for name, p := range map[string]map[string]any{
		"secret":  {"password": hookgate.Secret("x")},
		"int map": {"m": map[int]string{1: "a"}},
		"func":    {"f": func() {}},
	} {
		if _, err := EncodeParams(p); err == nil {
			t.Errorf("EncodeParams(%s) = nil error; want an error", name)
		}
	}
}

func TestCallAndParse(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(2)
	c := setup(t, sim, config.Portal{})
	ctx := context.Background()

	res, err := c.Call(ctx, "crm.deal.add", map[string]any{"fields": map[string]any{"TITLE": "Acme", "OPPORTUNITY": 1000}})
	if err != nil {
		t.Fatalf("crm.deal.add: %v", err)
	}
	var id int
	if err := res.Decode(&id); err != nil || id != 3 {
		t.Fatalf("crm.deal.add result = %s; want 3", res.Result)
	}
	res, err = c.Call(ctx, "crm.deal.get", map[string]any{"id": id})
	if err != nil {
		t.Fatalf("crm.deal.get: %v", err)
	}
	var deal map[string]any
	_ = res.Decode(&deal)
	if deal["TITLE"] != "Acme" || deal["OPPORTUNITY"] != "1000" || deal["ID"] != "3" {
		t.Errorf("crm.deal.get = %v", deal)
	}
	if res.Time.Start == 0 || res.Time.OperatingResetAt == 0 || res.Time.DateStart == "" || res.Attempts != 1 {
		t.Errorf("time block / attempts not read: %+v %d", res.Time, res.Attempts)
	}
	res, err = c.Call(ctx, "crm.deal.list", map[string]any{"select": []string{"ID"}})
	if err != nil || res.Total == nil || *res.Total != 3 || res.Next != nil {
		t.Errorf("crm.deal.list total/next = %v %v, %v", res.Total, res.Next, err)
	}

	_, err = c.Call(ctx, "crm.deal.get", map[string]any{"id": 999})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "" || ae.Description != "Not found" || ae.Status != 400 {
		t.Errorf("missing deal: %v; want APIError 400 Not found", err)
	}
	if IsTransient(err) {
		t.Errorf("IsTransient(not found) = true")
	}
	if _, err := c.Call(ctx, "bad/method", nil); err == nil {
		t.Errorf("bad method name accepted")
	}
}

func TestIsTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"query limit", &APIError{Code: CodeQueryLimitExceeded, Status: 503}, true},
		{"operating", &APIError{Code: CodeOperationTimeLimit, Status: 429}, true},
		{"internal", &APIError{Code: CodeInternalServerError, Status: 500}, true},
		{"unexpected", &APIError{Code: CodeUnexpectedAnswer, Status: 500}, true},
		{"overload 503 is a manual block", &APIError{Code: CodeOverloadLimit, Status: 503}, false},
		{"portal deleted 500", &APIError{Code: CodePortalDeleted, Status: 500}, false},
		{"method not found", &APIError{Code: CodeMethodNotFound, Status: 404}, false},
		{"invalid credentials 401", &APIError{Code: CodeInvalidCredentials, Status: 401}, false},
		{"invalid credentials 403", &APIError{Code: CodeInvalidCredentials, Status: 403}, false},
		{"no auth", &APIError{Code: CodeNoAuthFound, Status: 401}, false},
		{"access denied", &APIError{Code: CodeAccessDenied, Status: 403}, false},
		{"insufficient scope", &APIError{Code: CodeInsufficientScope, Status: 401}, false},
		{"unknown code 502", &APIError{Code: "SOMETHING", Status: 502}, true},
		{"empty code 400", &APIError{Status: 400, Description: "Not found"}, false},
		{"empty code 503", &APIError{Status: 503}, true},
		{"408", &APIError{Status: 408}, true},
		{"wrapped", fmt.Errorf("call x: %w", &APIError{Code: CodeQueryLimitExceeded}), true},
		{"circuit open", fmt.Errorf("call x: %w", ErrCircuitOpen), true},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", context.Canceled, false},
		{"secret store down", &secretError{errors.New("vault sealed")}, true},
		{"other", errors.New("bad params"), false},
	}
	for _, tc := range tests {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%s) = %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetryQueryLimitExceeded(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(1)
	sim.InjectFault(bitrix24test.Fault{Count: 2, Status: 503, Code: CodeQueryLimitExceeded, Description: "Too many requests"})
	clock := newFakeClock()
	rec := &recorder{}
	c := setup(t, sim, config.Portal{Rate: &config.Rate{PerSecond: 1e6, Burst: 1000}}, WithClock(clock), WithRecorder(rec))

	ctx := WithEventID(context.Background(), "ev-1")
	res, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1})
	if err != nil {
		t.Fatalf("Call after injected 503s: %v", err)
	}
	if res.Attempts != 3 || sim.Requests("crm.deal.get") != 3 {
		t.Errorf("attempts = %d, simulator saw %d; want 3, 3", res.Attempts, sim.Requests("crm.deal.get"))
	}
	// (1000/drain + 1000) ms × 1.5^i ±10 %, drain ≈ ∞ here → 1 s, 1.5 s.
	waits := clock.Waits()
	wantWaits := []time.Duration{time.Second, 1500 * time.Millisecond}
	if len(waits) != 2 {
		t.Fatalf("waits = %v; want 2", waits)
	}
	for i, w := range waits {
		if lo, hi := wantWaits[i]*9/10, wantWaits[i]*11/10; w < lo || w > hi {
			t.Errorf("wait %d = %v; want %v ±10%%", i, w, wantWaits[i])
		}
	}
	type row struct {
		Outcome, Error, EventID string
		Attempt, Status         uint16
	}
	var got []row
	for _, x := range rec.all() {
		got = append(got, row{x.Outcome, x.Error, x.EventID, x.Attempt, x.Status})
	}
	want := []row{
		{hookgate.OutcomeRetry, CodeQueryLimitExceeded, "ev-1", 1, 503},
		{hookgate.OutcomeRetry, CodeQueryLimitExceeded, "ev-1", 2, 503},
		{hookgate.OutcomeOK, "", "ev-1", 3, 200},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestRetryWait(t *testing.T) {
	c, err := NewBitrix24(config.Portal{ID: "p", BaseURL: "https://x.bitrix24.com", UserID: 1}, staticSecret("abcd"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		i      int
		err    error
		lo, hi time.Duration
	}{
		{"qle first", 0, &APIError{Code: CodeQueryLimitExceeded}, 1350 * time.Millisecond, 1650 * time.Millisecond},
		{"qle third", 2, &APIError{Code: CodeQueryLimitExceeded}, 3037 * time.Millisecond, 3713 * time.Millisecond},
		{"5xx first", 0, &APIError{Status: 502}, 900 * time.Millisecond, 1100 * time.Millisecond},
		{"5xx fourth", 3, &APIError{Status: 502}, 7200 * time.Millisecond, 8800 * time.Millisecond},
		{"5xx capped", 9, &APIError{Status: 502}, 27 * time.Second, 33 * time.Second},
		{"network", 1, errors.New("eof"), 1800 * time.Millisecond, 2200 * time.Millisecond},
		{"retry-after wins", 0, &APIError{Status: 503, RetryAfter: 7 * time.Second}, 7 * time.Second, 7 * time.Second},
		{"operating reset known", 0, &APIError{Code: CodeOperationTimeLimit, Time: &Time{Finish: 1000, OperatingResetAt: 1004}}, 5 * time.Second, 5 * time.Second},
		{"operating reset unknown", 0, &APIError{Code: CodeOperationTimeLimit}, 10 * time.Second, 10 * time.Second},
	}
	for _, tc := range tests {
		if got := c.retryWait(tc.i, tc.err); got < tc.lo || got > tc.hi {
			t.Errorf("retryWait(%s) = %v; want in [%v, %v]", tc.name, got, tc.lo, tc.hi)
		}
	}
}

// RetryDelay is the one place the wait after OPERATION_TIME_LIMIT is
// computed (the client's retries and holds, the routes' job retries).
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"network", errors.New("eof"), 0, false},
		{"plain api error", &APIError{Code: CodeQueryLimitExceeded}, 0, false},
		{"retry-after", fmt.Errorf("call: %w", &APIError{Status: 503, RetryAfter: 7 * time.Second}), 7 * time.Second, true},
		{"operating reset known", &APIError{Code: CodeOperationTimeLimit, Time: &Time{Finish: 1000, OperatingResetAt: 1004}}, 5 * time.Second, true},
		{"operating reset passed", &APIError{Code: CodeOperationTimeLimit, Time: &Time{Finish: 1000, OperatingResetAt: 990}}, time.Second, true},
		{"operating reset unknown", &APIError{Code: CodeOperationTimeLimit}, 10 * time.Second, true},
		{"operating, longer retry-after", &APIError{Code: CodeOperationTimeLimit, RetryAfter: time.Minute, Time: &Time{Finish: 1000, OperatingResetAt: 1004}}, time.Minute, true},
	}
	for _, tc := range tests {
		got, ok := RetryDelay(tc.err)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("RetryDelay(%s) = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestPermanentErrorsNotRetried(t *testing.T) {
	tests := []struct {
		name     string
		secret   string
		method   string
		wantCode string
		status   int
	}{
		{"method not found", bitrix24test.DefaultSecret, "crm.nothing.get", CodeMethodNotFound, 404},
		{"invalid credentials", "wrong-secret-value", "crm.deal.get", CodeInvalidCredentials, 401},
	}
	for _, tc := range tests {
		sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
		ts := sim.Start()
		rec := &recorder{}
		c, err := NewBitrix24(config.Portal{ID: "main", BaseURL: ts.URL, UserID: 1, Rate: unlimited, Retries: 5},
			staticSecret(tc.secret), WithRecorder(rec), WithClock(newFakeClock()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Call(context.Background(), tc.method, map[string]any{"id": 1})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != tc.wantCode || ae.Status != tc.status {
			t.Errorf("%s: err = %v; want %s %d", tc.name, err, tc.wantCode, tc.status)
		}
		if IsTransient(err) {
			t.Errorf("%s: IsTransient = true", tc.name)
		}
		if n := sim.TotalRequests(); n != 1 {
			t.Errorf("%s: simulator saw %d requests; want exactly 1", tc.name, n)
		}
		if rows := rec.all(); len(rows) != 1 || rows[0].Outcome != hookgate.OutcomeFailed || rows[0].Error != tc.wantCode {
			t.Errorf("%s: rows = %+v", tc.name, rows)
		}
		ts.Close()
	}
}

func TestBreaker(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(1)
	var mu sync.Mutex
	var changes []string
	obs := ObserverFuncs{Breaker: func(p, from, to string) {
		mu.Lock()
		changes = append(changes, from+">"+to)
		mu.Unlock()
	}}
	c := setup(t, sim, config.Portal{}, WithRetries(0), WithBreaker(3, 300*time.Millisecond), WithObserver(obs))
	ctx := context.Background()
	get := func() error { _, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); return err }

	// Permanent (4xx) answers do not trip it.
	for i := 0; i < 10; i++ {
		_, _ = c.Call(ctx, "crm.deal.get", map[string]any{"id": 999})
		_, _ = c.Call(ctx, "crm.nothing.get", nil)
	}
	if s := c.BreakerState(); s != "closed" {
		t.Fatalf("after 4xx answers breaker is %s; want closed", s)
	}

	sim.InjectFault(bitrix24test.Fault{Count: 1000, Status: 500, Code: CodeInternalServerError, Description: "boom"})
	for i := 0; i < 3; i++ {
		if err := get(); !isCode(err, CodeInternalServerError) {
			t.Fatalf("call %d: %v; want INTERNAL_SERVER_ERROR", i, err)
		}
	}
	if s := c.BreakerState(); s != "open" {
		t.Fatalf("after sustained 5xx breaker is %s; want open", s)
	}
	before := sim.TotalRequests()
	for i := 0; i < 5; i++ {
		if err := get(); !errors.Is(err, ErrCircuitOpen) || !IsTransient(err) {
			t.Errorf("open breaker: %v; want ErrCircuitOpen", err)
		}
	}
	if n := sim.TotalRequests() - before; n != 0 {
		t.Errorf("open breaker: simulator saw %d requests; want 0", n)
	}

	sim.ClearFaults()
	time.Sleep(350 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if s := c.BreakerState(); s != "closed" {
		t.Errorf("after recovery breaker is %s; want closed", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"closed>open", "open>half-open", "half-open>closed"}, changes); diff != "" {
		t.Errorf("breaker changes (-want +got):\n%s", diff)
	}
}

func TestOperatingLimit(t *testing.T) {
	clock := newFakeClock()
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clock.Now),
		bitrix24test.WithOperatingLimit(3*time.Second, 30*time.Second), bitrix24test.WithOperatingCost(time.Second))
	sim.SeedDeals(1)
	rec := &recorder{}
	c := setup(t, sim, config.Portal{}, WithClock(clock), WithRecorder(rec))
	ctx := context.Background()
	t0 := clock.Now()
	for i := 0; i < 3; i++ {
		if _, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// The 4th is answered 429; the client waits until operating_reset_at
	// (t0 + 30 s) + 1 s and succeeds.
	res, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1})
	if err != nil {
		t.Fatalf("4th call: %v", err)
	}
	if res.Attempts != 2 || sim.Answers(CodeOperationTimeLimit) != 1 {
		t.Errorf("attempts %d, 429 answers %d; want 2, 1", res.Attempts, sim.Answers(CodeOperationTimeLimit))
	}
	if diff := cmp.Diff([]time.Duration{31 * time.Second}, clock.Waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if got := clock.Now().Sub(t0); got < 30*time.Second {
		t.Errorf("retried %v after the start; want after operating_reset_at (30 s)", got)
	}
	// Other methods were never held.
	if _, err := c.Call(ctx, "crm.deal.list", nil); err != nil {
		t.Errorf("crm.deal.list: %v", err)
	}

	// A client that knows the limit holds the method before the portal
	// answers 429.
	clock2 := newFakeClock()
	sim2 := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clock2.Now),
		bitrix24test.WithOperatingLimit(3*time.Second, 30*time.Second), bitrix24test.WithOperatingCost(time.Second))
	sim2.SeedDeals(1)
	c2 := setup(t, sim2, config.Portal{}, WithClock(clock2), WithOperatingLimit(3*time.Second))
	for i := 0; i < 4; i++ {
		if _, err := c2.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); err != nil {
			t.Fatalf("held client call %d: %v", i, err)
		}
	}
	if n := sim2.Answers(CodeOperationTimeLimit); n != 0 {
		t.Errorf("held client: %d OPERATION_TIME_LIMIT answers; want 0", n)
	}
	if w := clock2.Waits(); len(w) != 1 || w[0] != 31*time.Second {
		t.Errorf("held client waits = %v; want [31s]", w)
	}

	// A hold longer than the allowed wait fails at once, without a request.
	clock3 := newFakeClock()
	sim3 := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clock3.Now),
		bitrix24test.WithOperatingLimit(time.Second, 10*time.Minute), bitrix24test.WithOperatingCost(time.Second))
	sim3.SeedDeals(1)
	c3 := setup(t, sim3, config.Portal{}, WithClock(clock3))
	_, _ = c3.Call(ctx, "crm.deal.get", map[string]any{"id": 1})
	_, err = c3.Call(ctx, "crm.deal.get", map[string]any{"id": 1}) // 429, reset in 10 min > 1 min
	if !isCode(err, CodeOperationTimeLimit) || !IsTransient(err) {
		t.Fatalf("long reset: %v; want OPERATION_TIME_LIMIT", err)
	}
	before := sim3.TotalRequests()
	_, err = c3.Call(ctx, "crm.deal.get", map[string]any{"id": 1})
	if !isCode(err, CodeOperationTimeLimit) || sim3.TotalRequests() != before {
		t.Errorf("held call: %v, %d new requests; want OPERATION_TIME_LIMIT without a request", err, sim3.TotalRequests()-before)
	}
}

func TestTimeout(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithLatency(300*time.Millisecond))
	sim.SeedDeals(1)
	rec := &recorder{}
	c := setup(t, sim, config.Portal{Timeout: config.Duration(50 * time.Millisecond)}, WithRetries(0), WithRecorder(rec))
	start := time.Now()
	_, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1})
	if err == nil || !IsTransient(err) || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("slow portal: %v after %v; want a transient timeout after ~50ms", err, time.Since(start))
	}
	if rows := rec.all(); len(rows) != 1 || rows[0].Status != 0 || rows[0].Error != "timeout" {
		t.Errorf("rows = %+v; want one with status 0, error timeout", rows)
	}
}

func TestAttemptContext(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(1)
	sim.InjectFault(bitrix24test.Fault{Count: 1, Status: 502, Code: "", Description: "Bad Gateway"})
	rec := &recorder{}
	c := setup(t, sim, config.Portal{}, WithRecorder(rec), WithClock(newFakeClock()))
	ctx := WithAttempt(WithEventID(context.Background(), "ev-9"), 4)
	if _, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rec.all() {
		got = append(got, fmt.Sprintf("%s %d %s %s %s", r.EventID, r.Attempt, r.Outcome, r.Error, r.Direction))
	}
	want := []string{"ev-9 4 retry http_502 outbound", "ev-9 5 ok  outbound"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	const old, cur = "old0secret0value0aaaa", "new0secret0value0bbbb"
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0),
		bitrix24test.WithCredentials("1", old), bitrix24test.WithCredentials("1", cur))
	sim.SeedDeals(3)
	ts := sim.Start()
	defer ts.Close()
	var mu sync.Mutex
	secret := old
	secretFn := func(context.Context) (hookgate.Secret, error) {
		mu.Lock()
		defer mu.Unlock()
		return hookgate.Secret(secret), nil
	}
	rec := &recorder{}
	c, err := NewBitrix24(config.Portal{ID: "main", BaseURL: ts.URL, UserID: 1, Rate: unlimited}, secretFn,
		WithRecorder(rec), WithClock(newFakeClock()), WithRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var errs []error
	call := func(method string, params map[string]any) {
		if _, err := c.Call(ctx, method, params); err != nil {
			errs = append(errs, err)
		}
	}
	call("crm.deal.get", map[string]any{"id": 1})
	// The secret echoed back inside a body is redacted too.
	call("crm.deal.add", map[string]any{"fields": map[string]any{"TITLE": "leak " + old}})
	call("crm.deal.get", map[string]any{"id": 4})
	mu.Lock()
	secret = cur // rotation: the next call uses the new secret
	mu.Unlock()
	call("crm.deal.get", map[string]any{"id": 2})
	call("crm.nothing.get", nil)
	sim.InjectFault(bitrix24test.Fault{Count: 2, Status: 500, Code: CodeInternalServerError})
	call("crm.deal.get", map[string]any{"id": 3})

	// Nobody listening: a transport error, which would name the URL.
	c2, _ := NewBitrix24(config.Portal{ID: "down", BaseURL: "http://127.0.0.1:1", UserID: 1, Rate: unlimited}, secretFn,
		WithRecorder(rec), WithRetries(0))
	if _, err := c2.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); err != nil {
		if !IsTransient(err) {
			t.Errorf("connection refused: IsTransient = false (%v)", err)
		}
		errs = append(errs, err)
	} else {
		t.Error("call to a closed port succeeded")
	}

	users := map[string]int{}
	for _, r := range sim.Received() {
		users[r.User]++
	}
	if len(errs) < 3 {
		t.Errorf("expected errors, got %v", errs)
	}
	for _, e := range errs {
		for _, s := range []string{old, cur} {
			if strings.Contains(e.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", e, e), s) {
				t.Errorf("error %q contains the secret", e)
			}
		}
	}
	rows := rec.all()
	if len(rows) < 8 {
		t.Fatalf("%d rows; want at least 8", len(rows))
	}
	for _, r := range rows {
		b, _ := json.Marshal(r)
		for _, s := range []string{old, cur} {
			if strings.Contains(string(b), s) {
				t.Errorf("row contains the secret: %s", b)
			}
		}
		if !strings.Contains(r.URL, "/rest/1/[redacted]/") {
			t.Errorf("row URL %q is not redacted", r.URL)
		}
	}
	if !strings.Contains(rows[1].RequestBody, "leak+[redacted]") {
		t.Errorf("add row request body = %q; want the secret redacted", rows[1].RequestBody)
	}
	// Both secrets were used, i.e. rotation took effect without a restart.
	var used []string
	for _, r := range sim.Received() {
		used = append(used, r.Method)
	}
	if n := len(sim.Received()); n < 7 {
		t.Errorf("simulator saw %d requests (%v)", n, used)
	}
}

func TestRotationUsesNewSecret(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithCredentials("1", "second-secret-value"))
	sim.SeedDeals(1)
	ts := sim.Start()
	defer ts.Close()
	n := 0
	secretFn := func(context.Context) (hookgate.Secret, error) {
		n++
		if n == 1 {
			return "first-secret-value", nil // already revoked at the portal
		}
		return "second-secret-value", nil
	}
	c, _ := NewBitrix24(config.Portal{ID: "main", BaseURL: ts.URL, UserID: 1, Rate: unlimited}, secretFn)
	if _, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); !isCode(err, CodeInvalidCredentials) {
		t.Fatalf("old secret: %v; want INVALID_CREDENTIALS", err)
	}
	if _, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatalf("rotated secret: %v", err)
	}
	if _, err := NewBitrix24(config.Portal{ID: "x", BaseURL: "ftp://x", UserID: 1}, secretFn); err == nil {
		t.Error("bad base_url accepted")
	}
}

func TestSecretError(t *testing.T) {
	sim := bitrix24test.NewServer()
	rec := &recorder{}
	ts := sim.Start()
	defer ts.Close()
	c, _ := NewBitrix24(config.Portal{ID: "main", BaseURL: ts.URL, UserID: 1},
		func(context.Context) (hookgate.Secret, error) { return "", errors.New("vault sealed") }, WithRecorder(rec))
	_, err := c.Call(context.Background(), "crm.deal.get", nil)
	if err == nil || !IsTransient(err) || sim.TotalRequests() != 0 {
		t.Errorf("secret error: %v (transient %v, %d requests)", err, IsTransient(err), sim.TotalRequests())
	}
	if rows := rec.all(); len(rows) != 1 || rows[0].Error != "secret_unavailable" {
		t.Errorf("rows = %+v", rows)
	}
}

func TestList(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(1234)
	c := setup(t, sim, config.Portal{})
	ctx := context.Background()
	modes := []struct {
		name      string
		list      func(context.Context, string, map[string]any) func(func(json.RawMessage, error) bool)
		sel       []string
		wantPages int
	}{
		{"offset", func(ctx context.Context, m string, p map[string]any) func(func(json.RawMessage, error) bool) {
			return c.List(ctx, m, p)
		}, []string{"ID", "TITLE"}, 25},
		{"fast", func(ctx context.Context, m string, p map[string]any) func(func(json.RawMessage, error) bool) {
			return c.ListFast(ctx, m, p)
		}, []string{"TITLE"}, 25},
	}
	for _, mode := range modes {
		sim.ResetCounters()
		seen := map[string]int{}
		for row, err := range mode.list(ctx, "crm.deal.list", map[string]any{"select": mode.sel}) {
			if err != nil {
				t.Fatalf("%s: %v", mode.name, err)
			}
			var r struct{ ID, TITLE string }
			if err := json.Unmarshal(row, &r); err != nil {
				t.Fatal(err)
			}
			seen[r.ID]++
		}
		dups := 0
		for _, n := range seen {
			if n != 1 {
				dups++
			}
		}
		if len(seen) != 1234 || dups != 0 {
			t.Errorf("%s: %d distinct deals, %d seen more than once; want 1234, 0", mode.name, len(seen), dups)
		}
		if n := sim.Requests("crm.deal.list"); n != mode.wantPages {
			t.Errorf("%s: %d pages; want %d", mode.name, n, mode.wantPages)
		}
	}
	// Stopping early stops paging.
	sim.ResetCounters()
	n := 0
	for _, err := range c.ListFast(ctx, "crm.deal.list", map[string]any{"filter": map[string]any{">=ID": 100}}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 60 {
			break
		}
	}
	if got := sim.Requests("crm.deal.list"); got != 2 {
		t.Errorf("early break: %d pages; want 2", got)
	}
	// An error ends the sequence with the error.
	var lastErr error
	for _, err := range c.List(ctx, "crm.nothing.list", nil) {
		lastErr = err
	}
	if !isCode(lastErr, CodeMethodNotFound) {
		t.Errorf("list of unknown method: %v", lastErr)
	}
}

func TestBatch(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	c := setup(t, sim, config.Portal{})
	ctx := context.Background()
	res, err := c.Batch(ctx, []BatchCmd{
		{Key: "add", Method: "crm.deal.add", Params: map[string]any{"fields": map[string]any{"TITLE": "Batch deal"}}},
		{Key: "get", Method: "crm.deal.get", Params: map[string]any{"id": "$result[add]"}},
		{Key: "contact", Method: "crm.contact.add", Params: map[string]any{"fields": map[string]any{"NAME": "$result[get][TITLE]"}}},
		{Key: "missing", Method: "crm.deal.get", Params: map[string]any{"id": 999}},
		{Key: "list", Method: "crm.deal.list", Params: map[string]any{"select": []string{"ID"}}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Results["add"]) != "1" || !strings.Contains(string(res.Results["get"]), `"TITLE":"Batch deal"`) {
		t.Errorf("results = %v", res.Results)
	}
	if sim.Item("contact", 1)["NAME"] != "Batch deal" {
		t.Errorf("$result[get][TITLE] not resolved: %v", sim.Item("contact", 1))
	}
	if diff := cmp.Diff(map[string]*APIError{"missing": {Description: "Not found"}}, res.Errors); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"list": 1}, res.Totals); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if sim.Requests("batch") != 1 {
		t.Errorf("simulator saw %d batch requests; want 1", sim.Requests("batch"))
	}

	// halt: nothing after the failing command runs.
	res, err = c.Batch(ctx, []BatchCmd{
		{Method: "crm.deal.get", Params: map[string]any{"id": 999}},
		{Method: "crm.deal.add", Params: map[string]any{"fields": map[string]any{"TITLE": "never"}}},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 0 || len(res.Errors) != 1 || sim.Count("deal") != 1 {
		t.Errorf("halt: results %v errors %v deals %d", res.Results, res.Errors, sim.Count("deal"))
	}

	// Size limits are checked before sending.
	sim.ResetCounters()
	big := make([]BatchCmd, MaxBatch+1)
	for i := range big {
		big[i] = BatchCmd{Method: "crm.deal.get", Params: map[string]any{"id": 1}}
	}
	if _, err := c.Batch(ctx, big, false); !errors.Is(err, ErrBatchSize) {
		t.Errorf("51 commands: %v; want ErrBatchSize", err)
	}
	if _, err := c.Batch(ctx, nil, false); !errors.Is(err, ErrBatchSize) {
		t.Errorf("0 commands: %v; want ErrBatchSize", err)
	}
	if _, err := c.Batch(ctx, big[:MaxBatch], false); err != nil {
		t.Errorf("50 commands: %v", err)
	}
	if sim.TotalRequests() != 1 {
		t.Errorf("simulator saw %d requests; want 1", sim.TotalRequests())
	}
}

// TestMembers covers batch members sent as arrays and [].
func TestMembers(t *testing.T) {
	got := map[string]json.RawMessage{}
	if err := members(json.RawMessage(`[1,null,{"a":1}]`), got); err != nil {
		t.Fatal(err)
	}
	want := map[string]json.RawMessage{"0": json.RawMessage("1"), "2": json.RawMessage(`{"a":1}`)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	empty := map[string]int{}
	if err := members(json.RawMessage(`[]`), empty); err != nil || len(empty) != 0 {
		t.Errorf("members([]) = %v, %v", empty, err)
	}
}

var _ http.RoundTripper = (*http.Transport)(nil)
