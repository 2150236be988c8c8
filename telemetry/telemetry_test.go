package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/telemetry"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func ratio(f float64) *float64 { return &f }

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Telemetry
		env  map[string]string
		want telemetry.Settings
		err  bool
	}{
		{name: "off by default", want: telemetry.Settings{Why: "no OTLP endpoint (telemetry.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT)"}},
		{name: "config endpoint", cfg: config.Telemetry{Endpoint: "http://c:4318"},
			want: telemetry.Settings{On: true, Endpoint: "http://c:4318", EndpointFrom: "telemetry.endpoint", Protocol: "http/protobuf", ServiceName: "hookgate"}},
		{name: "env endpoint, env protocol and service", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "gw-eu"},
			want: telemetry.Settings{On: true, EndpointFrom: "OTEL_EXPORTER_OTLP_ENDPOINT", Protocol: "grpc", ServiceName: "gw-eu"}},
		{name: "traces endpoint wins over the generic one", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/v1/traces"},
			want: telemetry.Settings{On: true, EndpointFrom: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Protocol: "http/protobuf", ServiceName: "hookgate"}},
		{name: "config wins over env", cfg: config.Telemetry{Endpoint: "https://c", Protocol: "http/json", SampleRatio: ratio(0.25), ServiceName: "mine"},
			env:  map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "theirs"},
			want: telemetry.Settings{On: true, Endpoint: "https://c", EndpointFrom: "telemetry.endpoint", Protocol: "http/json", Ratio: 0.25, HasRatio: true, ServiceName: "mine"}},
		{name: "sdk disabled", cfg: config.Telemetry{Endpoint: "http://c"}, env: map[string]string{"OTEL_SDK_DISABLED": "TRUE"},
			want: telemetry.Settings{Endpoint: "http://c", Why: "OTEL_SDK_DISABLED=true"}},
		{name: "exporter none", cfg: config.Telemetry{Endpoint: "http://c"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"},
			want: telemetry.Settings{Endpoint: "http://c", Why: "OTEL_TRACES_EXPORTER=none"}},
		{name: "bad env protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, err: true},
	} {
		got, err := telemetry.Resolve(tc.cfg, env(tc.env))
		if (err != nil) != tc.err {
			t.Errorf("Resolve(%s) error = %v; want error %v", tc.name, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Resolve(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestHTTPTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://c:4318":              "http://c:4318/v1/traces",
		"http://c:4318/":             "http://c:4318/v1/traces",
		"https://c/otlp/v1/traces":   "https://c/otlp/v1/traces",
		"http://127.0.0.1:4318/base": "http://127.0.0.1:4318/base",
	} {
		if got := telemetry.HTTPTracesURL(in); got != want {
			t.Errorf("HTTPTracesURL(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestOffCostsNothing: with tracing off, a span site allocates nothing
// and injects no trace context.
func TestOffCostsNothing(t *testing.T) {
	if telemetry.Enabled() {
		t.Fatal("tracing on before Setup")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, span := telemetry.Start(ctx, "x")
		if span.IsRecording() {
			t.Fatal("recording span with tracing off")
		}
		telemetry.Fail(span, "code")
		span.End()
		_ = telemetry.Inject(c)
		_ = telemetry.TraceID(c)
	})
	if allocs != 0 {
		t.Errorf("a span site with tracing off allocates %v times; want 0", allocs)
	}
	if h := telemetry.Headers(ctx); h != nil {
		t.Errorf("Headers with tracing off = %v; want nil", h)
	}
}

// exercise starts tracing with s, makes a parent and a child span, a
// link and a log line, and shuts down (which flushes).
func exercise(t *testing.T, s telemetry.Settings) (traceID, parentID string, logged string) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewTextHandler(&logs, nil)))
	shutdown, err := telemetry.Setup(context.Background(), s, "test-instance", log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if telemetry.Enabled() {
			t.Errorf("Enabled after shutdown")
		}
	}()
	if !telemetry.Enabled() {
		t.Fatal("Setup did not turn tracing on")
	}
	ctx, parent := telemetry.Start(context.Background(), "parent", trace.WithSpanKind(trace.SpanKindServer))
	cctx, child := telemetry.Start(ctx, "child")
	child.SetAttributes(attribute.String("k", "v"))
	telemetry.Fail(child, "QUERY_LIMIT_EXCEEDED")
	log.InfoContext(cctx, "inside")
	log.Info("outside")
	c := telemetry.Inject(cctx)
	if sc := telemetry.SpanContext(c); sc.SpanID() != child.SpanContext().SpanID() || sc.TraceID() != child.SpanContext().TraceID() {
		t.Errorf("SpanContext(Inject(child)) = %v; want the child's", sc)
	}
	h := http.Header{}
	telemetry.InjectHeader(cctx, h)
	if h.Get("traceparent") != c.TraceParent || !strings.HasPrefix(c.TraceParent, "00-"+child.SpanContext().TraceID().String()+"-") {
		t.Errorf("traceparent header %q, carrier %q", h.Get("traceparent"), c.TraceParent)
	}
	if got := telemetry.TraceID(cctx); got != child.SpanContext().TraceID().String() {
		t.Errorf("TraceID = %q", got)
	}
	child.End()
	parent.End()
	return parent.SpanContext().TraceID().String(), parent.SpanContext().SpanID().String(), logs.String()
}

func checkExported(t *testing.T, rec *testenv.OTLPReceiver, traceID, parentID, logged string) {
	t.Helper()
	spans := rec.Trace(traceID)
	if len(spans) != 2 {
		t.Fatalf("received %d spans of trace %s; want 2: %+v", len(spans), traceID, rec.Spans())
	}
	p, c := spans[0], spans[1]
	if p.Name != "parent" || p.ParentSpanID != "" || c.Name != "child" || c.ParentSpanID != parentID {
		t.Errorf("spans = %s (parent %q), %s (parent %q); want parent, then child under it", p.Name, p.ParentSpanID, c.Name, c.ParentSpanID)
	}
	if c.Attrs["k"] != "v" || c.Attrs["hookgate.error_code"] != "QUERY_LIMIT_EXCEEDED" || c.StatusMessage != "QUERY_LIMIT_EXCEEDED" {
		t.Errorf("child attributes %v, status %v %q", c.Attrs, c.StatusCode, c.StatusMessage)
	}
	if p.Resource["service.name"] != "tests" || p.Resource["service.instance.id"] != "test-instance" {
		t.Errorf("resource = %v", p.Resource)
	}
	lines := strings.Split(strings.TrimSpace(logged), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "trace_id="+traceID) || !strings.Contains(lines[0], "span_id="+c.SpanID) || strings.Contains(lines[1], "trace_id") {
		t.Errorf("log lines:\n%s\nwant trace_id and span_id on the line inside the span only", logged)
	}
}

func TestExportHTTP(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	tid, pid, logged := exercise(t, telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, ServiceName: "tests"})
	checkExported(t, rec, tid, pid, logged)
}

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	rec *testenv.OTLPReceiver
}

func (g grpcTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.rec.Add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestExportGRPC(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t) // its HTTP side unused: spans come through gRPC
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcTraces{rec: rec})
	go srv.Serve(ln)
	defer srv.Stop()
	tid, pid, logged := exercise(t, telemetry.Settings{On: true, Endpoint: "http://" + ln.Addr().String(), Protocol: telemetry.ProtocolGRPC, ServiceName: "tests"})
	checkExported(t, rec, tid, pid, logged)
}

func TestSampleRatioZero(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, Ratio: 0, HasRatio: true, ServiceName: "tests"}, "i", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := telemetry.Start(context.Background(), "unsampled")
	if got := telemetry.TraceID(ctx); got != "" {
		t.Errorf("TraceID of an unsampled span = %q; want \"\" (history keeps only exported traces)", got)
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Spans()); n != 0 {
		t.Errorf("sample_ratio 0 exported %d spans", n)
	}
}

func TestCarrierRoundTrip(t *testing.T) {
	c := telemetry.Carrier{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "vendor=x"}
	sc := telemetry.SpanContext(c)
	if !sc.IsValid() || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("SpanContext(%+v) = %v", c, sc)
	}
	if got := telemetry.CarrierOf(sc); got != c {
		t.Errorf("CarrierOf(SpanContext(c)) = %+v; want %+v", got, c)
	}
	for _, bad := range []string{"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"} {
		if sc := telemetry.SpanContext(telemetry.Carrier{TraceParent: bad}); sc.IsValid() {
			t.Errorf("SpanContext(%q) valid; want invalid", bad)
		}
	}
	if got := telemetry.CarrierOf(trace.SpanContext{}); got != (telemetry.Carrier{}) {
		t.Errorf("CarrierOf(invalid) = %+v; want empty", got)
	}
}

// TestExportHTTPJSON: protocol http/json posts OTLP/JSON (the span's name
// and its hex trace id in the body) to /v1/traces.
func TestExportHTTPJSON(t *testing.T) {
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.URL.Path + " " + r.Header.Get("Content-Type") + " " + string(b)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: srv.URL, Protocol: telemetry.ProtocolHTTPJSON, ServiceName: "tests"},
		"i", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, span := telemetry.Start(context.Background(), "json-span")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		tid := span.SpanContext().TraceID().String()
		if !strings.HasPrefix(req, "/v1/traces application/json ") || !strings.Contains(req, `"json-span"`) || !strings.Contains(strings.ToLower(req), tid) {
			t.Errorf("export = %s; want OTLP/JSON to /v1/traces with the span and trace id %s", req, tid)
		}
	default:
		t.Fatal("nothing exported")
	}
}
