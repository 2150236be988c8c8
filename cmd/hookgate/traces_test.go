package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// TestTracesEndToEnd is issue 20's acceptance: two gateways on one
// external NATS server, both exporting OTLP/HTTP to a receiver that
// decodes with the protocol's own definitions. A, with no routes, accepts
// a Bitrix24 event (its sender's traceparent attached); B routes it,
// enriches it through the Bitrix24 simulator and delivers it to a
// platform that answers 500 once, then 204. The test finds one trace with
// every span, its attributes and parent/child links (the retried job
// attempt linked to the first), the trace id in every history row of the
// event and in the platform's traceparent, and no secret anywhere in what
// was exported.
func TestTracesEndToEnd(t *testing.T) {
	chAddr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, chAddr)
	busURL := testenv.NATSServer(t)
	rec := testenv.NewOTLPReceiver(t)

	const (
		appToken     = "trace-b24-app-token-5h2k9q"
		portalSecret = "trace-portal-secret-8j3l1w"
		signingKey   = "trace signing key 0123456789abc"
	)
	signing := "whsec_" + base64.StdEncoding.EncodeToString([]byte(signingKey))
	secrets := []string{appToken, portalSecret, signing, strings.TrimPrefix(signing, "whsec_"), signingKey}

	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", portalSecret))
	sim.SeedDeals(3)
	simSrv := sim.Start()
	defer simSrv.Close()

	var mu sync.Mutex
	var platHeaders []http.Header
	plat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		platHeaders = append(platHeaders, r.Header.Clone())
		if len(platHeaders) == 1 {
			w.WriteHeader(http.StatusInternalServerError) // the first attempt fails
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer plat.Close()

	common := fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
bus: {url: "%s"}
history:
  clickhouse: {addr: ["%s"], database: %s}
  flush_interval: 200ms
retry: {schedule: [300ms, 600ms], workers: 2}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
`, busURL, chAddr, db)
	secretsYAML := fmt.Sprintf("b24/token: {token: %s}\nportal/secret: {token: %s}\nplatform/signing: {token: %s}\n", appToken, portalSecret, signing)
	start := func(name, extra string, env ...string) *gatewayProc {
		path, dir := writeConfig(t, common+extra)
		if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(secretsYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		return startGateway(t, path, append(env, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=hookgate-"+name)...)
	}
	// A: the endpoint in the config; B: in the standard variable
	a := start("a", fmt.Sprintf("telemetry: {endpoint: %q, protocol: http/protobuf, sample_ratio: 1}\n", rec.URL))
	b := start("b", fmt.Sprintf(`portals:
  - {id: main, base_url: "%s", user_id: 1, secret: portal/secret}
routes:
  - name: deal-sync
    on: {source: b24, event: ONCRMDEALADD}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "%s/in", secret: platform/signing, timeout: 2s}
`, simSrv.URL, plat.URL), "OTEL_EXPORTER_OTLP_ENDPOINT="+rec.URL)

	const senderTrace, senderSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	status, acc := post(t, a.URL+"/webhook/b24", formType, bitrixForm(appToken, "2", "1766047124"),
		map[string]string{"traceparent": "00-" + senderTrace + "-" + senderSpan + "-01"})
	if status != 200 || acc["status"] != "accepted" {
		t.Fatalf("POST to A: %d %v", status, acc)
	}
	eventID := acc["id"]
	if status, rej := post(t, a.URL+"/webhook/b24", formType, bitrixForm("wrong-token", "3", "1766047125"), nil); status != 401 {
		t.Fatalf("POST with a wrong token: %d %v; want 401", status, rej)
	}

	// the inbound span names the event: its trace is the event's
	var traceID string
	waitFor(t, "the inbound span", 20*time.Second, func() bool {
		for _, s := range rec.Spans() {
			if s.Name == "POST /webhook/{source}" && s.Attrs["hookgate.event_id"] == eventID {
				traceID = s.TraceID
				return true
			}
		}
		return false
	})
	want := map[string]int{
		"POST /webhook/{source}": 1, "publish hookgate.in": 1, "route event": 1,
		"job route": 2, "bitrix24 crm.deal.get": 2, "deliver": 2,
	}
	count := func() map[string]int {
		got := map[string]int{}
		for _, s := range rec.Trace(traceID) {
			got[s.Name]++
		}
		return got
	}
	waitFor(t, "every span of the event's trace", 30*time.Second, func() bool {
		got := count()
		for n, k := range want {
			if got[n] < k {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // a span too many would come now
	spans := rec.Trace(traceID)
	got := count()
	for n, k := range want {
		if got[n] != k {
			t.Errorf("trace %s has %d spans named %q; want %d (all: %v)", traceID, got[n], n, k, got)
		}
	}
	if len(spans) != 9 {
		t.Errorf("trace %s has %d spans; want 9: %v", traceID, len(spans), got)
	}

	byName := map[string][]testenv.Span{}
	byID := map[string]testenv.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		byID[s.SpanID] = s
	}
	one := func(name string) testenv.Span {
		if len(byName[name]) == 0 {
			t.Fatalf("no span %q in trace %s", name, traceID)
		}
		return byName[name][0]
	}
	parentName := func(s testenv.Span) string { return byID[s.ParentSpanID].Name }
	inbound, publish, route := one("POST /webhook/{source}"), one("publish hookgate.in"), one("route event")

	// the inbound span: a root on A, the sender's traceparent a link
	if inbound.ParentSpanID != "" || inbound.Resource["service.name"] != "hookgate-a" {
		t.Errorf("inbound span: parent %q, service %q; want a root on A", inbound.ParentSpanID, inbound.Resource["service.name"])
	}
	for k, v := range map[string]string{"hookgate.source": "b24", "hookgate.provider": "bitrix24", "hookgate.outcome": "accepted",
		"http.response.status_code": "200", "hookgate.event": "ONCRMDEALADD", "http.route": "/webhook/{source}"} {
		if inbound.Attrs[k] != v {
			t.Errorf("inbound span %s = %q; want %q", k, inbound.Attrs[k], v)
		}
	}
	if len(inbound.Links) != 1 || inbound.Links[0].TraceID != senderTrace || inbound.Links[0].SpanID != senderSpan {
		t.Errorf("inbound span links = %+v; want the sender's traceparent", inbound.Links)
	}
	if traceID == senderTrace {
		t.Errorf("the event's trace is the sender's: want a trace of its own, linked")
	}
	if parentName(publish) != inbound.Name || publish.Attrs["messaging.system"] != "nats" || publish.Attrs["hookgate.duplicate"] != "false" {
		t.Errorf("publish span: parent %q, attrs %v", parentName(publish), publish.Attrs)
	}
	// routed by B, under A's publish span (through the CloudEvent)
	if route.ParentSpanID != publish.SpanID || route.Resource["service.name"] != "hookgate-b" || route.Attrs["hookgate.routes"] != "[deal-sync]" {
		t.Errorf("route span: parent %q (want %s), service %q, routes %q", route.ParentSpanID, publish.SpanID, route.Resource["service.name"], route.Attrs["hookgate.routes"])
	}

	// two job attempts under the routing; the second linked to the first
	jobs := byName["job route"]
	if len(jobs) == 2 {
		first, second := jobs[0], jobs[1]
		if first.Attrs["hookgate.attempt"] != "1" {
			first, second = second, first
		}
		for i, j := range []testenv.Span{first, second} {
			if j.ParentSpanID != route.SpanID || j.Attrs["hookgate.attempt"] != strconv.Itoa(i+1) || j.Attrs["hookgate.job.id"] != eventID+"/deal-sync" {
				t.Errorf("job attempt %d: parent %q (want %s), attrs %v", i+1, j.ParentSpanID, route.SpanID, j.Attrs)
			}
		}
		if first.Attrs["hookgate.outcome"] != "retry" || second.Attrs["hookgate.outcome"] != "ok" {
			t.Errorf("job outcomes %q, %q; want retry, ok", first.Attrs["hookgate.outcome"], second.Attrs["hookgate.outcome"])
		}
		if len(second.Links) != 1 || second.Links[0].SpanID != first.SpanID || second.Links[0].TraceID != traceID {
			t.Errorf("second job attempt links = %+v; want the first attempt %s", second.Links, first.SpanID)
		}
		if len(first.Links) != 0 {
			t.Errorf("first job attempt links = %+v; want none", first.Links)
		}
		// under each attempt: one Bitrix24 call and one delivery
		for i, j := range []testenv.Span{first, second} {
			var calls, deliveries []testenv.Span
			for _, s := range spans {
				if s.ParentSpanID != j.SpanID {
					continue
				}
				switch s.Name {
				case "bitrix24 crm.deal.get":
					calls = append(calls, s)
				case "deliver":
					deliveries = append(deliveries, s)
				}
			}
			if len(calls) != 1 || len(deliveries) != 1 {
				t.Errorf("attempt %d has %d Bitrix24 calls and %d deliveries under it; want 1 and 1", i+1, len(calls), len(deliveries))
				continue
			}
			c, d := calls[0], deliveries[0]
			if c.Attrs["http.response.status_code"] != "200" || c.Attrs["hookgate.portal"] != "main" || c.Attrs["bitrix24.method"] != "crm.deal.get" ||
				!strings.HasSuffix(c.Attrs["url.full"], "/rest/1/[redacted]/crm.deal.get.json") {
				t.Errorf("Bitrix24 span of attempt %d: %v", i+1, c.Attrs)
			}
			wantStatus, wantOutcome := "500", "retry"
			if i == 1 {
				wantStatus, wantOutcome = "204", "ok"
			}
			if d.Attrs["http.response.status_code"] != wantStatus || d.Attrs["hookgate.outcome"] != wantOutcome || d.Attrs["hookgate.route"] != "deal-sync" {
				t.Errorf("delivery span of attempt %d: %v; want status %s, outcome %s", i+1, d.Attrs, wantStatus, wantOutcome)
			}
			if i == 0 && (d.Attrs["hookgate.error_code"] != "http_500" || d.StatusMessage != "http_500") {
				t.Errorf("failed delivery span: error_code %q, status %q; want http_500", d.Attrs["hookgate.error_code"], d.StatusMessage)
			}
		}
	}

	// the platform's traceparent: this trace, the successful delivery's span
	mu.Lock()
	hdrs := append([]http.Header(nil), platHeaders...)
	mu.Unlock()
	if len(hdrs) != 2 {
		t.Fatalf("the platform saw %d requests; want 2", len(hdrs))
	}
	for i, h := range hdrs {
		parts := strings.Split(h.Get("traceparent"), "-")
		if len(parts) != 4 || parts[1] != traceID || byID[parts[2]].Name != "deliver" {
			t.Errorf("delivery %d traceparent %q; want trace %s and a deliver span", i+1, h.Get("traceparent"), traceID)
		}
	}
	// the simulator got the trace too, each request from its attempt's span
	for _, r := range sim.Received() {
		parts := strings.Split(r.TraceParent, "-")
		if len(parts) != 4 || parts[1] != traceID || byID[parts[2]].Name != "bitrix24 crm.deal.get" {
			t.Errorf("Bitrix24 request %s traceparent %q; want trace %s and a bitrix24 span", r.Method, r.TraceParent, traceID)
		}
	}

	// every history row of the event names the trace
	var rows string
	waitFor(t, "the event's five history rows", 15*time.Second, func() bool {
		rows = chQuery(t, fmt.Sprintf("SELECT direction, operation, attempt, trace_id FROM %s.exchanges WHERE event_id = '%s' ORDER BY ts, attempt FORMAT TSV", db, eventID))
		return strings.Count(rows, "\n") == 4
	})
	for _, line := range strings.Split(rows, "\n") {
		if f := strings.Split(line, "\t"); len(f) != 4 || f[3] != traceID {
			t.Errorf("history row %q; want trace_id %s", line, traceID)
		}
	}

	// log lines made inside a span carry its trace: B's job retry
	if l := fullLog(b); !strings.Contains(l, "job attempt failed") || !strings.Contains(l, "trace_id="+traceID) {
		t.Errorf("B's log has no job retry line with trace_id=%s:\n%s", traceID, l[max(0, len(l)-4000):])
	}

	// the rejected request: its own trace, with its answer
	var rejected bool
	for _, s := range rec.Spans() {
		if s.Name == "POST /webhook/{source}" && s.Attrs["hookgate.outcome"] == "rejected" {
			rejected = true
			if s.Attrs["http.response.status_code"] != "401" || s.Attrs["hookgate.error_code"] != "invalid_token" || s.TraceID == traceID {
				t.Errorf("rejected request span: %v (trace %s)", s.Attrs, s.TraceID)
			}
		}
	}
	if !rejected {
		t.Errorf("no span for the rejected request")
	}

	// no secret in any attribute, link, event or resource received
	for _, s := range rec.Spans() {
		text := fmt.Sprint(s.Name, s.Attrs, s.Resource, s.Links, s.Events, s.StatusMessage)
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Errorf("span %q holds secret %q: %s", s.Name, sec, text)
			}
		}
	}
}
