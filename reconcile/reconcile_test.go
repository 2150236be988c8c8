package reconcile_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/reconcile"
	"github.com/hookgate/hookgate/routes"
)

func openBus(t *testing.T) (*events.Bus, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default().Bus
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := events.Open(ctx, cfg, dir)
	if err != nil {
		t.Fatalf("events.Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	url, err := events.TokenURL(cfg.Listen, dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, url
}

// clock is a settable clock shared by the simulator and the reconciler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// published collects the events a reconciler stores.
type published struct {
	mu  sync.Mutex
	evs []hookgate.Event
}

func (p *published) publish(_ context.Context, subject, msgID string, data []byte) (bool, error) {
	var ev hookgate.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev)
	return false, nil
}

func (p *published) byID() map[string]hookgate.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]hookgate.Event{}
	for _, ev := range p.evs {
		out[ev.Data.Params["data[FIELDS][ID]"]] = ev
	}
	return out
}

func client(t *testing.T, sim *bitrix24test.Server) *outbound.Bitrix24 {
	t.Helper()
	ts := sim.Start()
	t.Cleanup(ts.Close)
	c, err := outbound.NewBitrix24(config.Portal{ID: "main", BaseURL: ts.URL, UserID: 1, Rate: &config.Rate{PerSecond: -1}},
		func(context.Context) (hookgate.Secret, error) {
			return hookgate.Secret(bitrix24test.DefaultSecret), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func buckets(t *testing.T, js jetstream.JetStream) (state, seen jetstream.KeyValue) {
	t.Helper()
	ctx := context.Background()
	state, err := reconcile.Bucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen, err = routes.SeenBucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return state, seen
}

func putSeen(t *testing.T, kv jetstream.KeyValue, id string, modified, readAt time.Time) {
	t.Helper()
	b, _ := json.Marshal(routes.SeenRecord{DateModify: modified, ReadAt: readAt})
	if _, err := kv.Put(context.Background(), routes.SeenKey("main", "deal", id), b); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileFindsMissedChanges: changes in the window that the seen
// records do not cover become events (ADD for a new entity, UPDATE for a
// changed one); covered ones and changes outside the window do not; the
// list is paged; the next run waits for its period.
func TestReconcileFindsMissedChanges(t *testing.T) {
	bus, _ := openBus(t)
	state, seen := buckets(t, bus.JetStream())
	t1 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t1.Add(-100 * time.Second)}
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clk.Now))
	sim.SeedDeals(1) // deal 1: before the window
	clk.Set(t1.Add(-30 * time.Second))
	sim.SeedDeals(119) // deals 2-120
	clk.Set(t1.Add(-20 * time.Second))
	for id := 2; id <= 4; id++ {
		sim.Change("deal", id, map[string]any{"STAGE_ID": "WON"}, "")
	}
	changed := t1.Add(-20 * time.Second)
	putSeen(t, seen, "2", changed, changed.Add(time.Second))          // delivered after the change's second: covered
	putSeen(t, seen, "3", changed, changed.Add(300*time.Millisecond)) // read in the same second: maybe not all of it
	putSeen(t, seen, "4", t1.Add(-30*time.Second), t1.Add(-29*time.Second))
	for id := 5; id <= 120; id++ {
		if id%2 == 0 { // half the new deals were delivered
			putSeen(t, seen, strconv.Itoa(id), t1.Add(-30*time.Second), t1.Add(-29*time.Second))
		}
	}
	clk.Set(t1)
	pub := &published{}
	var runs []string
	r, err := reconcile.New(config.Reconcile{Portal: "main", Entity: "deal", Every: config.Duration(time.Minute), Settle: config.Duration(time.Second)},
		reconcile.Deps{Client: client(t, sim), State: state, Seen: seen, Publish: pub.publish, Clock: clk.Now,
			Observe: func(_, _, result string, n int) { runs = append(runs, result+" "+strconv.Itoa(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	sim.ResetCounters()
	ran, n, err := r.RunOnce(context.Background())
	if err != nil || !ran {
		t.Fatalf("RunOnce = %v, %d, %v", ran, n, err)
	}
	got := pub.byID()
	want := map[string]string{"3": "ONCRMDEALUPDATE", "4": "ONCRMDEALUPDATE"}
	for id := 5; id <= 120; id += 2 {
		want[strconv.Itoa(id)] = "ONCRMDEALADD"
	}
	if n != len(want) || len(got) != len(want) {
		t.Errorf("published %d events (%d distinct); want %d", n, len(got), len(want))
	}
	for id, ev := range want {
		if got[id].Type != ev {
			t.Errorf("deal %s: event %q; want %q", id, got[id].Type, ev)
		}
	}
	if ev := got["3"]; ev.Data.WebhookID != "reconcile-main" || ev.Data.Provider != "reconcile" || ev.Data.Params["reconcile"] != "1" ||
		ev.Source != "hookgate/reconcile-main" || ev.ID == "" {
		t.Errorf("event of deal 3 = %+v; want one from source reconcile-main", ev)
	}
	if pages := sim.Requests("crm.deal.list"); pages != 3 {
		t.Errorf("%d list calls; want 3 pages of up to 50", pages)
	}

	// not due again before its period
	if ran, _, err := r.RunOnce(context.Background()); ran || err != nil {
		t.Errorf("second RunOnce at once = %v, %v; want not run", ran, err)
	}
	// a period later: only what changed since
	clk.Set(t1.Add(30 * time.Second))
	sim.Change("deal", 2, map[string]any{"TITLE": "again"}, "")
	clk.Set(t1.Add(time.Minute))
	pub2 := &published{}
	r2, _ := reconcile.New(config.Reconcile{Portal: "main", Entity: "deal", Every: config.Duration(time.Minute), Settle: config.Duration(time.Second)},
		reconcile.Deps{Client: client(t, sim), State: state, Seen: seen, Publish: pub2.publish, Clock: clk.Now})
	if ran, n, err := r2.RunOnce(context.Background()); !ran || n != 1 || err != nil {
		t.Fatalf("run a period later = %v, %d, %v; want 1 event", ran, n, err)
	}
	if ev := pub2.byID()["2"]; ev.Type != "ONCRMDEALUPDATE" {
		t.Errorf("a period later: %v; want deal 2 updated", pub2.byID())
	}
	if len(runs) != 1 || runs[0] != "ok "+strconv.Itoa(len(want)) {
		t.Errorf("observed runs %v", runs)
	}
}

// TestReconcileFailureKeepsCheckpoint: a failed list leaves the checkpoint
// where it was, and the changes are found by the next run.
func TestReconcileFailureKeepsCheckpoint(t *testing.T) {
	bus, _ := openBus(t)
	state, seen := buckets(t, bus.JetStream())
	t1 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t1.Add(-30 * time.Second)}
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clk.Now))
	sim.SeedDeals(3)
	clk.Set(t1)
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.list", Count: 10, Status: 403, Code: "ACCESS_DENIED", Description: "Access denied"})
	pub := &published{}
	cfg := config.Reconcile{Portal: "main", Entity: "deal", Every: config.Duration(time.Minute), Settle: config.Duration(time.Second)}
	r, _ := reconcile.New(cfg, reconcile.Deps{Client: client(t, sim), State: state, Seen: seen, Publish: pub.publish, Clock: clk.Now})
	if ran, _, err := r.RunOnce(context.Background()); !ran || err == nil {
		t.Fatalf("RunOnce with a failing list = %v, %v; want an error", ran, err)
	}
	sim.ClearFaults()
	clk.Set(t1.Add(time.Minute))
	if ran, n, err := r.RunOnce(context.Background()); !ran || n != 3 || err != nil {
		t.Errorf("next run = %v, %d, %v; want the 3 deals", ran, n, err)
	}
}

// TestReconcileTwoInstances: two instances on one bus, each with its own
// connection, reconcile once per period between them, not twice.
func TestReconcileTwoInstances(t *testing.T) {
	_, url := openBus(t)
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	c := client(t, sim)
	const every = 500 * time.Millisecond
	var mu sync.Mutex
	var starts []time.Time
	who := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b"} {
		b, err := events.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		state, seen := buckets(t, b.JetStream())
		r, err := reconcile.New(config.Reconcile{Portal: "main", Entity: "deal", Every: config.Duration(every), Settle: config.Duration(time.Millisecond)},
			reconcile.Deps{Client: c, State: state, Seen: seen, Publish: (&published{}).publish, Instance: name,
				Observe: func(_, _, result string, _ int) {
					if result == "ok" {
						mu.Lock()
						starts = append(starts, time.Now())
						who[name]++
						mu.Unlock()
					}
				}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 37 * time.Millisecond)
		wg.Go(func() { _ = r.Run(ctx) })
	}
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	// 3 s at one run per 500 ms: 6 or 7 runs (a poll may come up to 200 ms
	// late); two instances each running every period would make 12
	if len(starts) < 4 || len(starts) > 7 {
		t.Errorf("%d runs in 3 s (by instance %v); want one per 500 ms period", len(starts), who)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < every*9/10 {
			t.Errorf("runs %d and %d only %v apart; want at least a period", i-1, i, gap)
		}
	}
	if lists := sim.Requests("crm.deal.list"); lists != len(starts) {
		t.Errorf("%d list calls for %d runs", lists, len(starts))
	}
}
