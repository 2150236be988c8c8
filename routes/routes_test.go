package routes_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/outbound/delivery/deliverytest"
	"github.com/hookgate/hookgate/routes"
)

const (
	source        = "bitrix24-deals"
	signingRef    = "platform/signing"
	portalRef     = "bitrix24/main"
	platformPath  = "/hooks/deals"
	routeDealSync = "deal-sync"
)

var signingSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("platform signing key for tests"))

func testLogger() *slog.Logger {
	if os.Getenv("HOOKGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

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

func (r *recorder) forEvent(id string) []hookgate.Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hookgate.Exchange
	for _, x := range r.rows {
		if x.EventID == id {
			out = append(out, x)
		}
	}
	return out
}

// secrets is a fixed secret store.
type secrets map[string]string

func (s secrets) Secret(_ context.Context, ref string) (hookgate.Secret, error) {
	v, ok := s[ref]
	if !ok {
		return "", hookgate.Errorf(hookgate.ENotFound, "no secret %q", ref)
	}
	return hookgate.Secret(v), nil
}

// delivery is one request the platform received.
type received struct {
	at      time.Time
	header  http.Header
	body    []byte
	status  int
	started time.Time
}

// platform is the test platform endpoint.
type platform struct {
	mu       sync.Mutex
	got      []received
	answer   func(n int) (status int, retryAfter string) // n: 0-based request number
	delay    time.Duration
	inflight atomic.Int32
	maxIn    atomic.Int32
}

func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// the delivery fails where the test sees it
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	for {
		m := p.maxIn.Load()
		if n <= m || p.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	p.mu.Lock()
	idx := len(p.got)
	answer, delay := p.answer, p.delay
	p.got = append(p.got, received{})
	p.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	status, after := http.StatusOK, ""
	if answer != nil {
		status, after = answer(idx)
	}
	p.mu.Lock()
	p.got[idx] = received{at: time.Now(), header: r.Header.Clone(), body: body, status: status, started: started}
	p.mu.Unlock()
	if after != "" {
		w.Header().Set("Retry-After", after)
	}
	w.WriteHeader(status)
}

func (p *platform) set(answer func(n int) (int, string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = answer
}

func (p *platform) all() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func (p *platform) ok() []received {
	var out []received
	for _, r := range p.all() {
		if r.status >= 200 && r.status < 300 {
			out = append(out, r)
		}
	}
	return out
}

// env is a gateway minus HTTP: embedded NATS, the simulator, the platform.
type env struct {
	t        testing.TB
	dir      string
	bus      *events.Bus
	sim      *bitrix24test.Server
	portal   *outbound.Bitrix24
	platform *platform
	platURL  string
	rec      *recorder
	routes   []config.Route
	jobsCfg  jobs.Config
	nbarrier int // barrier events published
	batchers map[string]*outbound.Batcher

	q      *jobs.Queue
	eng    *routes.Engine
	cancel context.CancelFunc
	done   chan error
}

func newEnv(t testing.TB, schedule ...time.Duration) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), sim: bitrix24test.NewServer(), platform: &platform{}, rec: &recorder{}}
	e.sim.SeedDeals(40)
	simSrv := e.sim.Start()
	t.Cleanup(simSrv.Close)
	platSrv := httptest.NewServer(e.platform)
	t.Cleanup(platSrv.Close)
	e.platURL = platSrv.URL + platformPath
	var err error
	e.portal, err = outbound.NewBitrix24(config.Portal{ID: "main", BaseURL: simSrv.URL, UserID: 1, Secret: portalRef},
		func(context.Context) (hookgate.Secret, error) { return bitrix24test.DefaultSecret, nil },
		outbound.WithRecorder(e.rec))
	if err != nil {
		t.Fatal(err)
	}
	if len(schedule) == 0 {
		schedule = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	}
	e.jobsCfg = jobs.Config{Schedule: schedule, Partitions: 16, StopGrace: time.Second}
	e.routes = []config.Route{{
		Name:    routeDealSync,
		On:      config.On{Source: source, Event: "ONCRMDEAL*"},
		Call:    &config.Call{Portal: "main", Method: "crm.deal.get", Params: map[string]any{"id": `{{ param "data[FIELDS][ID]" }}`}},
		Deliver: &config.Deliver{URL: e.platURL, Secret: signingRef, Timeout: config.Duration(5 * time.Second)},
	}}
	t.Cleanup(e.close)
	return e
}

// start opens the bus (if closed) and runs a new engine on it.
func (e *env) start() {
	e.t.Helper()
	ctx := context.Background()
	if e.bus == nil {
		cfg := config.Default().Bus
		cfg.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(e.t))
		bus, err := events.Open(ctx, cfg, e.dir, events.WithLogger(testLogger()))
		if err != nil {
			e.t.Fatalf("events.Open: %v", err)
		}
		e.bus = bus
	}
	js := e.bus.JetStream()
	q, err := jobs.New(ctx, js, e.jobsCfg, jobs.WithLogger(testLogger()))
	if err != nil {
		e.t.Fatalf("jobs.New: %v", err)
	}
	kv, err := routes.DisabledBucket(ctx, js, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := routes.New(e.routes, routes.Deps{
		Queue: q, Portals: map[string]*outbound.Bitrix24{"main": e.portal}, Batchers: e.batchers,
		Secrets: secrets{signingRef: signingSecret}, Disabled: kv,
		Recorder: e.rec, Logger: testLogger(),
	})
	if err != nil {
		e.t.Fatalf("routes.New: %v", err)
	}
	e.q, e.eng = q, eng
	rctx, cancel := context.WithCancel(ctx)
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- eng.Run(rctx, js) }()
}

// stop stops the engine, leaving the bus open.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run = %v; want nil after cancel", err)
		}
	case <-time.After(30 * time.Second):
		e.t.Error("Run did not return after cancel")
	}
	e.cancel = nil
}

// close stops the engine and shuts the bus (and its server) down.
func (e *env) close() {
	e.stop()
	if e.bus != nil {
		e.bus.Close()
		e.bus = nil
	}
}

// publish stores a Bitrix24 event the way the gateway does and returns
// its id. msgID "" stores it without de-duplication (a sender's redelivery
// after the bus's window).
func (e *env) publish(event string, deal int, dedup string, withMsgID bool) string {
	e.t.Helper()
	id := hookgate.EventID(source, dedup)
	params := map[string]string{
		"event": event, "data[FIELDS][ID]": strconv.Itoa(deal), "ts": dedup,
		"auth[application_token]": hookgate.Redacted, "auth[domain]": "portal.example",
	}
	ev := hookgate.Event{
		SpecVersion: "1.0", ID: id, Source: "hookgate/" + source, Type: event, Time: time.Now().UTC(),
		DataContentType: "application/json",
		Data: hookgate.EventData{
			WebhookID: source, Provider: "bitrix24", Event: event, Params: params,
			Body:        "event=" + event + "&data%5BFIELDS%5D%5BID%5D=" + strconv.Itoa(deal),
			ContentType: "application/x-www-form-urlencoded", Headers: map[string]string{},
		},
	}
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	msgID := ""
	if withMsgID {
		msgID = id
	}
	if _, err := e.bus.Publish(context.Background(), hookgate.InboundSubject(source, event), msgID, data); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return id
}

// barrier publishes a later event for deal and waits for its delivery,
// then returns the requests the platform got before that one. The engine
// reads events in stream order, and the jobs of one deal (one job key,
// one partition) run one at a time in order, a redelivered job first:
// whatever the earlier events of the deal still had to send has been
// sent by then. A positive signal instead of a sleep that hopes nothing
// follows.
func (e *env) barrier(deal int) []received {
	e.t.Helper()
	e.nbarrier++
	id := e.publish("ONCRMDEALUPDATE", deal, fmt.Sprintf("barrier-%d-%d", deal, e.nbarrier), true)
	var before []received
	eventually(e.t, 10*time.Second, "the barrier event's delivery", func() bool {
		got := e.platform.all()
		for i, r := range got {
			if r.status == http.StatusOK && r.header.Get("webhook-id") == id+"/"+routeDealSync {
				before = got[:i]
				return true
			}
		}
		return false
	})
	return before
}

// disabled is Engine.Disabled; an error fails the test.
func (e *env) disabled() []routes.DisabledRoute {
	e.t.Helper()
	d, err := e.eng.Disabled(context.Background())
	if err != nil {
		e.t.Fatalf("Disabled: %v", err)
	}
	return d
}

// dead is the queue's dead letters; an error fails the test.
func (e *env) dead() []jobs.DeadJob {
	e.t.Helper()
	d, err := e.q.Dead(context.Background())
	if err != nil {
		e.t.Fatalf("Dead: %v", err)
	}
	return d
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delivered is the part of a delivered body the tests look at.
type delivered struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Event      string            `json:"event"`
		Params     map[string]string `json:"params"`
		Enrichment struct {
			Portal string         `json:"portal"`
			Method string         `json:"method"`
			Result map[string]any `json:"result"`
		} `json:"enrichment"`
	} `json:"data"`
}

func decode(t *testing.T, b []byte) delivered {
	t.Helper()
	var d delivered
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("delivered body %s: %v", b, err)
	}
	return d
}

func TestDealAddDelivered(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.publish("ONCRMDEALADD", 9, "add-9", true)
	eventually(t, 10*time.Second, "delivery", func() bool { return len(e.platform.ok()) == 1 })
	got := e.barrier(9) // nothing else may follow
	if len(got) != 1 {
		t.Fatalf("platform got %d requests; want exactly 1", len(got))
	}
	d := got[0]
	body := decode(t, d.body)
	if body.ID != id || body.Data.Event != "ONCRMDEALADD" || body.Data.Params["data[FIELDS][ID]"] != "9" {
		t.Errorf("delivered event = %+v; want event %s for deal 9", body, id)
	}
	if body.Data.Enrichment.Portal != "main" || body.Data.Enrichment.Method != "crm.deal.get" {
		t.Errorf("enrichment = %s/%s; want main/crm.deal.get", body.Data.Enrichment.Portal, body.Data.Enrichment.Method)
	}
	if diff := cmp.Diff(e.sim.Item("deal", 9), body.Data.Enrichment.Result); diff != "" {
		t.Errorf("delivered deal differs from the simulator's (-sim +delivered):\n%s", diff)
	}
	if wid := d.header.Get("webhook-id"); wid != id+"/"+routeDealSync {
		t.Errorf("webhook-id = %q; want %q", wid, id+"/"+routeDealSync)
	}
	t.Run("signature verifies with standardwebhooks", func(t *testing.T) {
		if ok, out := deliverytest.NewVerifier(t).Verify(t, signingSecret, false, d.header, d.body); !ok {
			t.Errorf("standardwebhooks.verify failed: %s", out)
		}
	})
	// History: the call and the delivery, both under the event id.
	rows := e.rec.forEvent(id)
	var ops []string
	for _, r := range rows {
		ops = append(ops, r.Provider+" "+r.Operation+" "+r.Outcome)
	}
	if diff := cmp.Diff([]string{"bitrix24 crm.deal.get ok", "http deliver ok"}, ops); diff != "" {
		t.Errorf("history rows of event %s (-want +got):\n%s", id, diff)
	}
	for _, r := range rows {
		if strings.Contains(r.URL, bitrix24test.DefaultSecret) || strings.Contains(r.RequestHeaders, d.header.Get("webhook-signature")) {
			t.Errorf("history row holds a secret: %+v", r)
		}
	}
	if n := e.sim.Requests("crm.deal.get"); n != 2 {
		t.Errorf("crm.deal.get calls = %d; want 2 (the event's and the barrier's)", n)
	}
}

// TestPlatformDownRetried: the platform is down across a gateway restart;
// attempts follow the schedule; once it is back the event is delivered
// exactly once.
func TestPlatformDownRetried(t *testing.T) {
	sched := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}
	e := newEnv(t, sched...)
	var up atomic.Bool
	e.platform.set(func(int) (int, string) {
		if up.Load() {
			return http.StatusOK, ""
		}
		return http.StatusServiceUnavailable, ""
	})
	e.start()
	id := e.publish("ONCRMDEALADD", 9, "add-9-down", true)
	eventually(t, 10*time.Second, "two failed attempts", func() bool { return len(e.platform.all()) >= 2 })
	e.close() // the gateway stops (connection and embedded server)
	e.start() // and starts again on the same data dir
	eventually(t, 10*time.Second, "a failed attempt after the restart", func() bool { return len(e.platform.all()) >= 4 })
	up.Store(true)
	eventually(t, 10*time.Second, "delivery", func() bool { return len(e.platform.ok()) == 1 })

	got := e.barrier(9)
	ok := 0
	for _, r := range got {
		if r.status == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("successful deliveries = %d; want 1", ok)
	}
	if got[len(got)-1].status != http.StatusOK {
		t.Errorf("the last request was answered %d; want the delivery last", got[len(got)-1].status)
	}
	for i, r := range got {
		if wid := r.header.Get("webhook-id"); wid != id+"/"+routeDealSync {
			t.Errorf("request %d webhook-id = %q; want it stable: %q", i, wid, id+"/"+routeDealSync)
		}
		if i == 0 {
			continue
		}
		gap := r.started.Sub(got[i-1].started)
		t.Logf("attempt %d: %v after the previous (schedule %v), answered %d", i+1, gap.Round(time.Millisecond), sched[i-1], r.status)
		if gap < sched[i-1]-10*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous; want at least %v", i+1, gap, sched[i-1])
		}
	}
	var attempts []uint16
	for _, r := range e.rec.forEvent(id) {
		if r.Operation == "deliver" {
			attempts = append(attempts, r.Attempt)
		}
	}
	for i, a := range attempts {
		if int(a) != i+1 {
			t.Errorf("delivery rows' attempts = %v; want 1..%d", attempts, len(attempts))
			break
		}
	}
}

func TestSameEventTwice(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.publish("ONCRMDEALADD", 9, "add-9-twice", true)
	if again := e.publish("ONCRMDEALADD", 9, "add-9-twice", true); again != id {
		t.Fatalf("same delivery got event id %s, then %s", id, again)
	}
	// Past the bus's de-duplication window the event is stored again;
	// its job id (event id + route) still makes one job.
	e.publish("ONCRMDEALADD", 9, "add-9-twice", false)
	eventually(t, 10*time.Second, "delivery", func() bool { return len(e.platform.ok()) == 1 })
	if n := len(e.barrier(9)); n != 1 {
		t.Errorf("platform got %d requests for one event; want 1", n)
	}
}

func TestBurstInOrder(t *testing.T) {
	e := newEnv(t)
	e.platform.delay = 5 * time.Millisecond
	e.start()
	var want []string
	for i := range 20 {
		ts := fmt.Sprintf("upd-9-%02d", i)
		e.publish("ONCRMDEALUPDATE", 9, ts, true)
		want = append(want, ts)
	}
	eventually(t, 20*time.Second, "20 deliveries", func() bool { return len(e.platform.ok()) == 20 })
	var got []string
	for _, r := range e.platform.ok() {
		got = append(got, decode(t, r.body).Data.Params["ts"])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order of deliveries for deal 9 (-sent +delivered):\n%s", diff)
	}
}

// TestDealsInParallel: with a platform taking 200 ms per delivery, eight
// different deals finish in far less than 8 × 200 ms.
func TestDealsInParallel(t *testing.T) {
	e := newEnv(t)
	const slow = 200 * time.Millisecond
	e.start()
	// Warm up (consumers created, connections open), then measure.
	e.publish("ONCRMDEALUPDATE", 40, "par-warmup", true)
	eventually(t, 10*time.Second, "warm-up delivery", func() bool { return len(e.platform.ok()) == 1 })
	e.platform.mu.Lock()
	e.platform.got, e.platform.delay = nil, slow
	e.platform.mu.Unlock()
	// Eight deals on eight different partitions.
	var deals []int
	used := map[int]bool{}
	for d := 1; len(deals) < 8 && d < 40; d++ {
		p := e.q.Partition(source + "/" + strconv.Itoa(d))
		if !used[p] {
			used[p] = true
			deals = append(deals, d)
		}
	}
	start := time.Now()
	for _, d := range deals {
		e.publish("ONCRMDEALUPDATE", d, "par-"+strconv.Itoa(d), true)
	}
	eventually(t, 20*time.Second, "8 deliveries", func() bool { return len(e.platform.ok()) == 8 })
	total := time.Since(start)
	for _, r := range e.platform.ok() {
		t.Logf("deal %s: delivery ran %v..%v", decode(t, r.body).Data.Params["data[FIELDS][ID]"],
			r.started.Sub(start).Round(time.Millisecond), r.at.Sub(start).Round(time.Millisecond))
	}
	t.Logf("8 deals delivered in %v (serialised: %v); at most %d deliveries at once", total.Round(time.Millisecond), 8*slow, e.platform.maxIn.Load())
	if total >= 4*slow {
		t.Errorf("8 deals took %v; want far less than %v (they must not wait for each other)", total, 8*slow)
	}
	if m := e.platform.maxIn.Load(); m < 4 {
		t.Errorf("at most %d deliveries ran at once; want several", m)
	}
}

func TestGoneDisablesRoute(t *testing.T) {
	e := newEnv(t)
	var gone atomic.Bool
	gone.Store(true)
	e.platform.set(func(int) (int, string) {
		if gone.Load() {
			return http.StatusGone, ""
		}
		return http.StatusOK, ""
	})
	e.start()
	ctx := context.Background()
	first := e.publish("ONCRMDEALADD", 9, "gone-1", true)
	eventually(t, 10*time.Second, "route disabled", func() bool { return len(e.disabled()) == 1 })
	d := e.disabled()
	if d[0].Route != routeDealSync || d[0].EventID != first || d[0].URL != e.platURL {
		t.Errorf("Disabled = %+v; want %s by event %s", d, routeDealSync, first)
	}
	calls := e.sim.Requests("crm.deal.get")
	second := e.publish("ONCRMDEALADD", 10, "gone-2", true)
	eventually(t, 10*time.Second, "two dead jobs", func() bool { return len(e.dead()) == 2 })
	if n := len(e.platform.all()); n != 1 {
		t.Errorf("platform requests = %d; want 1 (the disabled route does not deliver)", n)
	}
	if n := e.sim.Requests("crm.deal.get"); n != calls {
		t.Errorf("crm.deal.get calls for a disabled route = %d; want none", n-calls)
	}
	dead := e.dead()
	if dead[1].Job.EventID != second || dead[1].Attempts != 1 || !strings.Contains(dead[1].LastError, "disabled") {
		t.Errorf("dead job of the disabled route = %+v; want event %s dead after 1 attempt, disabled", dead[1], second)
	}

	gone.Store(false)
	if err := e.eng.Enable(ctx, routeDealSync); err != nil {
		t.Fatalf("Enable: %v", err)
	}
	for _, dj := range dead {
		if err := e.q.Replay(ctx, dj.Job.ID); err != nil {
			t.Fatalf("Replay(%s): %v", dj.Job.ID, err)
		}
	}
	eventually(t, 10*time.Second, "replayed deliveries", func() bool { return len(e.platform.ok()) == 2 })
	var ids []string
	for _, r := range e.platform.ok() {
		ids = append(ids, r.header.Get("webhook-id"))
	}
	slices.Sort(ids)
	want := []string{first + "/" + routeDealSync, second + "/" + routeDealSync}
	slices.Sort(want)
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("replayed webhook-ids (-want +got):\n%s", diff)
	}
	if d := e.disabled(); len(d) != 0 {
		t.Errorf("Disabled after Enable = %+v; want none", d)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, 50*time.Millisecond, 50*time.Millisecond)
	e.platform.set(func(n int) (int, string) {
		if n == 0 {
			return http.StatusTooManyRequests, "1"
		}
		return http.StatusOK, ""
	})
	e.start()
	e.publish("ONCRMDEALADD", 9, "ra-9", true)
	eventually(t, 10*time.Second, "delivery", func() bool { return len(e.platform.ok()) == 1 })
	got := e.platform.all()
	gap := got[1].started.Sub(got[0].started)
	t.Logf("retry %v after a 429 with Retry-After: 1 (schedule 50ms)", gap.Round(time.Millisecond))
	if gap < time.Second {
		t.Errorf("retry came %v after a 429 with Retry-After: 1; want at least 1s", gap)
	}
}

func TestPermanentCallErrorDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.routes[0].Call.Method = "crm.deal.nosuchmethod"
	e.start()
	id := e.publish("ONCRMDEALADD", 9, "perm-9", true)
	eventually(t, 10*time.Second, "dead job", func() bool { return len(e.dead()) == 1 })
	d := e.dead()
	if d[0].Job.EventID != id || d[0].Attempts != 1 || !strings.Contains(d[0].LastError, "ERROR_METHOD_NOT_FOUND") {
		t.Errorf("dead job = %+v; want event %s dead after 1 attempt with ERROR_METHOD_NOT_FOUND", d[0], id)
	}
	if n := len(e.platform.all()); n != 0 {
		t.Errorf("platform requests = %d; want 0", n)
	}
}

// stubPortal is a client that is never called.
func stubPortal(t *testing.T) map[string]*outbound.Bitrix24 {
	t.Helper()
	c, err := outbound.NewBitrix24(config.Portal{ID: "main", BaseURL: "https://portal.example", UserID: 1},
		func(context.Context) (hookgate.Secret, error) { return "x", nil })
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*outbound.Bitrix24{"main": c}
}

func TestNewValidates(t *testing.T) {
	q := &jobs.Queue{}
	portals := stubPortal(t)
	rs := []config.Route{
		{Name: "ok", On: config.On{Source: "s", Event: "*"}, Call: &config.Call{Portal: "main", Method: "crm.deal.get", Params: map[string]any{"id": `{{ param "data[FIELDS][ID]" }}`}}},
		{Name: "bad", On: config.On{Source: "s", Event: "*"}, Key: "{{ .Nope", Call: &config.Call{Portal: "other", Method: "crm.deal.update", Params: map[string]any{
			"id":     `{{ param "x" }`,
			"fields": map[string]any{"TITLE": "{{ json }", "OK": "plain"},
			"select": []any{"ID", "{{ end }}"},
		}}},
	}
	_, err := routes.New(rs, routes.Deps{Queue: q, Portals: portals})
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("New = %v; want config.Problems", err)
	}
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
		if !strings.HasPrefix(p.Message, "template parse error: line 1: ") && !strings.Contains(p.Message, "portal") {
			t.Errorf("problem %s: %q; want a template parse error or a portal problem", p.Path, p.Message)
		}
	}
	want := []string{"routes[1].key", "routes[1].call.portal", "routes[1].call.params.fields.TITLE", "routes[1].call.params.id", "routes[1].call.params.select[1]"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("problem paths (-want +got):\n%s\n%v", diff, err)
	}
	// Delivering needs secrets and the disabled bucket.
	rs = []config.Route{{Name: "d", On: config.On{Source: "s", Event: "*"}, Deliver: &config.Deliver{URL: "http://x/", Secret: "p"}}}
	if _, err := routes.New(rs, routes.Deps{Queue: q}); err == nil {
		t.Error("New(deliver without secrets and bucket) = nil error")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		fold, want bool
	}{
		{"*", "anything", false, true},
		{"ONCRMDEAL*", "ONCRMDEALADD", true, true},
		{"ONCRMDEAL*", "onCrmDealUpdate", true, true},
		{"ONCRMDEAL*", "ONCRMLEADADD", true, false},
		{"ONCRMDEALADD", "ONCRMDEALADD", true, true},
		{"ONCRMDEALADD", "ONCRMDEALADDX", true, false},
		{"bitrix24-deals", "bitrix24-deals", false, true},
		{"bitrix24-deals", "Bitrix24-Deals", false, false},
		{"bitrix24-*", "bitrix24-leads", false, true},
	}
	for _, tc := range tests {
		if got := routes.Match(tc.pattern, tc.s, tc.fold); got != tc.want {
			t.Errorf("Match(%q, %q, %v) = %v; want %v", tc.pattern, tc.s, tc.fold, got, tc.want)
		}
	}
}

func TestJobsRenderKeysAndTemplates(t *testing.T) {
	rs := []config.Route{
		{Name: "deals", On: config.On{Source: source, Event: "ONCRMDEAL*"}, Call: &config.Call{Portal: "main", Method: "m"}},
		{Name: "by-json", On: config.On{Source: "*", Event: "*"}, Key: `{{ json "order.items.1.sku" }}-{{ .Type }}`, Call: &config.Call{Portal: "main", Method: "m"}},
		{Name: "leads", On: config.On{Source: source, Event: "ONCRMLEAD*"}, Call: &config.Call{Portal: "main", Method: "m"}},
	}
	eng, err := routes.New(rs, routes.Deps{Queue: &jobs.Queue{}, Portals: stubPortal(t)})
	if err != nil {
		t.Fatal(err)
	}
	ev := &hookgate.Event{ID: "ev-1", Type: "ONCRMDEALADD", Data: hookgate.EventData{
		WebhookID: source, Event: "ONCRMDEALADD", Params: map[string]string{"data[FIELDS][ID]": "9"},
		JSON: json.RawMessage(`{"order":{"items":[{"sku":"a"},{"sku":"b-2"}]}}`),
	}}
	js, err := eng.Jobs(ev, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var got [][3]string
	for _, j := range js {
		got = append(got, [3]string{j.ID, j.Key, j.EventID})
	}
	want := [][3]string{
		{"ev-1/deals", source + "/9", "ev-1"},
		{"ev-1/by-json", source + "/b-2-ONCRMDEALADD", "ev-1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Jobs (-want +got):\n%s", diff)
	}
}

// TestStopWhileStarting: a stop that comes while Run is still finding the
// stream and creating consumers is a graceful stop too (nil, not "context
// canceled"), however early it comes.
func TestStopWhileStarting(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.stop()
	js := e.bus.JetStream()
	testenv.StopWhileStarting(t, func(ctx context.Context) error { return e.eng.Run(ctx, js) })
}

// BenchmarkRouteEvents: b.N Bitrix24 events are in the stream before the
// engine starts; it reports how many a second become stored jobs (the
// route's call and delivery run in the jobs' own workers, not timed).
func BenchmarkRouteEvents(b *testing.B) {
	e := newEnv(b)
	e.start() // creates the consumer, so that it starts before the events
	e.stop()
	for i := range b.N {
		e.publish("ONCRMDEALUPDATE", 1+i%40, "bench-"+strconv.Itoa(i), true)
	}
	b.ResetTimer()
	start := time.Now()
	e.start()
	js := e.bus.JetStream()
	for {
		s, err := js.Stream(context.Background(), jobs.DefaultStream)
		if err != nil {
			b.Fatal(err)
		}
		// a work queue: jobs leave the stream when done, so count them by sequence
		if s.CachedInfo().State.LastSeq >= uint64(b.N) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
