package outbound

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/telemetry"
)

// TestAttemptSpans turns tracing on (not in parallel: it is the process's
// tracer) and checks the Bitrix24 client's spans: one client span per HTTP
// attempt under the caller's span, a retry after a wait linked to the
// attempt before, a batch naming its commands; each request's traceparent
// is its attempt's span, each history row has the trace id, and no span
// holds the webhook's secret.
func TestAttemptSpans(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, ServiceName: "outbound-test"},
		"test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(2)
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.get", Count: 1, Status: 503, Code: CodeQueryLimitExceeded, Description: "Too many requests"})
	rows := &recorder{}
	c := setup(t, sim, config.Portal{Rate: &config.Rate{PerSecond: 1e6, Burst: 1000}}, WithClock(newFakeClock()), WithRecorder(rows))

	ctx, parent := telemetry.Start(context.Background(), "job route")
	ctx = WithEventID(ctx, "ev-7405")
	if _, err := c.Call(ctx, "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Batch(ctx, []BatchCmd{{Key: "a", Method: "crm.deal.get", Params: map[string]any{"id": 1}}, {Key: "b", Method: "crm.deal.list"}}, false); err != nil {
		t.Fatal(err)
	}
	parent.End()
	if err := shutdown(context.Background()); err != nil { // flushes
		t.Fatal(err)
	}
	traceID := parent.SpanContext().TraceID().String()
	spans := rec.Trace(traceID)
	var gets, batches []testenv.Span
	for _, s := range spans {
		switch s.Name {
		case "bitrix24 crm.deal.get":
			gets = append(gets, s)
		case "bitrix24 batch":
			batches = append(batches, s)
		}
	}
	if len(gets) != 2 || len(batches) != 1 {
		t.Fatalf("spans of the trace: %d crm.deal.get, %d batch; want 2 and 1 (%+v)", len(gets), len(batches), spans)
	}
	first, second := gets[0], gets[1]
	if first.Attrs["hookgate.outcome"] != "retry" || first.Attrs["hookgate.error_code"] != CodeQueryLimitExceeded || first.Attrs["http.response.status_code"] != "503" {
		t.Errorf("first attempt: %v", first.Attrs)
	}
	if second.Attrs["hookgate.outcome"] != "ok" || second.Attrs["hookgate.attempt"] != "2" || len(second.Links) != 1 || second.Links[0].SpanID != first.SpanID {
		t.Errorf("second attempt: %v, links %+v; want ok, attempt 2, linked to %s", second.Attrs, second.Links, first.SpanID)
	}
	parentID := parent.SpanContext().SpanID().String()
	for _, s := range append(gets, batches...) {
		if s.ParentSpanID != parentID || s.Attrs["hookgate.event_id"] != "ev-7405" {
			t.Errorf("span %s: parent %s, event %q; want parent %s", s.Name, s.ParentSpanID, s.Attrs["hookgate.event_id"], parentID)
		}
		if strings.Contains(fmtSpan(s), bitrix24test.DefaultSecret) {
			t.Errorf("span %s holds the webhook secret: %s", s.Name, fmtSpan(s))
		}
	}
	if got := batches[0].Attrs["bitrix24.batch.commands"]; got != "[a=crm.deal.get b=crm.deal.list]" {
		t.Errorf("batch commands = %q; want [a=crm.deal.get b=crm.deal.list]", got)
	}
	byID := map[string]string{}
	for _, s := range spans {
		byID[s.SpanID] = s.Name
	}
	for _, r := range sim.Received() {
		p := strings.Split(r.TraceParent, "-")
		if len(p) != 4 || p[1] != traceID || byID[p[2]] != "bitrix24 "+r.Method {
			t.Errorf("request %s: traceparent %q; want its attempt's span in trace %s", r.Method, r.TraceParent, traceID)
		}
	}
	for _, x := range rows.all() {
		if x.TraceID != traceID {
			t.Errorf("history row %s attempt %d: trace_id %q; want %s", x.Operation, x.Attempt, x.TraceID, traceID)
		}
	}
}

func fmtSpan(s testenv.Span) string {
	var b strings.Builder
	b.WriteString(s.Name + s.StatusMessage)
	for k, v := range s.Attrs {
		b.WriteString(k + "=" + v + " ")
	}
	for _, l := range s.Links {
		for k, v := range l.Attrs {
			b.WriteString(k + "=" + v + " ")
		}
	}
	return b.String()
}

// TestBatcherSpans: calls of three traces gathered into one batch request
// make one "bitrix24 batch" span, in the first caller's trace, linked to
// the other two callers' spans; each command's history row carries its
// own caller's trace id.
func TestBatcherSpans(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, ServiceName: "outbound-test"},
		"test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(3)
	rows := &recorder{}
	c := setup(t, sim, config.Portal{}, WithRecorder(rows))
	bt := NewBatcher(c, 5*time.Second, 3) // the third call fills it: sent at once
	var wg sync.WaitGroup
	traces := make([]string, 3)
	spans := make([]string, 3)
	for i := range 3 {
		ctx, span := telemetry.Start(context.Background(), "job route")
		traces[i], spans[i] = span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()
		ctx = WithEventID(ctx, "ev-"+strconv.Itoa(i+1))
		wg.Go(func() {
			defer span.End()
			if _, err := bt.Call(ctx, "crm.deal.get", map[string]any{"id": i + 1}); err != nil {
				t.Errorf("call %d: %v", i+1, err)
			}
		})
	}
	wg.Wait()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := sim.Requests("batch"); n != 1 {
		t.Fatalf("batch requests = %d; want 1", n)
	}
	var batch []testenv.Span
	for _, s := range rec.Spans() {
		if s.Name == "bitrix24 batch" {
			batch = append(batch, s)
		}
	}
	if len(batch) != 1 {
		t.Fatalf("%d batch spans; want 1", len(batch))
	}
	b := batch[0]
	linked := map[string]bool{}
	for _, l := range b.Links {
		if l.Attrs["hookgate.link"] == "batched call" {
			linked[l.TraceID+"/"+l.SpanID] = true
		}
	}
	own := -1
	for i := range 3 {
		if b.TraceID == traces[i] && b.ParentSpanID == spans[i] {
			own = i
		} else if !linked[traces[i]+"/"+spans[i]] {
			t.Errorf("batch span does not link caller %d (%s/%s): links %+v", i+1, traces[i], spans[i], b.Links)
		}
	}
	if own < 0 || len(linked) != 2 {
		t.Errorf("batch span in trace %s under %s, %d links; want the first caller's trace and 2 links", b.TraceID, b.ParentSpanID, len(linked))
	}
	for _, x := range rows.all() {
		if x.EventID == "" {
			continue // the batch request's own row
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(x.EventID, "ev-"))
		if x.TraceID != traces[i-1] {
			t.Errorf("command row of %s: trace_id %q; want its caller's %s", x.EventID, x.TraceID, traces[i-1])
		}
	}
}
