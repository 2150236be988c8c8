package reconcile_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/reconcile"
	"github.com/hookgate/hookgate/telemetry"
)

type rows struct {
	mu sync.Mutex
	xs []hookgate.Exchange
}

func (r *rows) Record(x hookgate.Exchange) { r.mu.Lock(); r.xs = append(r.xs, x); r.mu.Unlock() }

// TestReconcileTraces: with tracing on (not in parallel: the tracer is the
// process's), each event of a missed change starts a trace at its publish
// span, carries that span's traceparent, and its history row the trace id.
func TestReconcileTraces(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, ServiceName: "reconcile-test"},
		"test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	bus, _ := openBus(t)
	state, seen := buckets(t, bus.JetStream())
	t1 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t1.Add(-30 * time.Second)}
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0), bitrix24test.WithClock(clk.Now))
	sim.SeedDeals(2)
	clk.Set(t1)
	pub := &published{}
	hist := &rows{}
	cfg := config.Reconcile{Portal: "main", Entity: "deal", Every: config.Duration(time.Minute), Settle: config.Duration(time.Second)}
	r, err := reconcile.New(cfg, reconcile.Deps{Client: client(t, sim), State: state, Seen: seen, Publish: pub.publish, Clock: clk.Now, Recorder: hist})
	if err != nil {
		t.Fatal(err)
	}
	if ran, n, err := r.RunOnce(context.Background()); !ran || n != 2 || err != nil {
		t.Fatalf("RunOnce = %v, %d, %v; want the 2 deals", ran, n, err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := map[string]testenv.Span{}
	for _, s := range rec.Spans() {
		if s.Name == "reconcile publish hookgate.in" {
			spans[s.Attrs["hookgate.event_id"]] = s
		}
	}
	if len(pub.evs) != 2 || len(spans) != 2 {
		t.Fatalf("%d events, %d reconcile spans; want 2 and 2", len(pub.evs), len(spans))
	}
	trace := map[string]string{}
	for _, ev := range pub.evs {
		s, ok := spans[ev.ID]
		if p := strings.Split(ev.TraceParent, "-"); !ok || len(p) != 4 || p[1] != s.TraceID || p[2] != s.SpanID || s.ParentSpanID != "" {
			t.Errorf("event %s traceparent %q; want its own root publish span %+v", ev.ID, ev.TraceParent, s)
		}
		trace[ev.ID] = s.TraceID
	}
	hist.mu.Lock()
	defer hist.mu.Unlock()
	for _, x := range hist.xs {
		if x.TraceID == "" || x.TraceID != trace[x.EventID] {
			t.Errorf("row of %s: trace_id %q; want %q", x.EventID, x.TraceID, trace[x.EventID])
		}
	}
}
