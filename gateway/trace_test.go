package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/telemetry"
)

// TestRequestSpans turns tracing on (not in parallel: the tracer is the
// process's) and posts through the gateway: each request is a server span
// named by its route with its answer, the bus publish under it; a valid
// sender traceparent is a link, a malformed or oversized one is ignored;
// the history row has the trace id; a 503 marks both spans failed; no
// span holds the source's token or the api key (which is in the path).
func TestRequestSpans(t *testing.T) {
	rec := testenv.NewOTLPReceiver(t)
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Settings{On: true, Endpoint: rec.URL, Protocol: telemetry.ProtocolHTTP, ServiceName: "gw-test"},
		"test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	f := newFixture(t)
	post := func(path, body, traceparent string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", form)
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const sender = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		path, body, traceparent string
		status                  int
		link                    bool
	}{
		{"/webhook/a", "event=E&token=s3cret-token-a&id=span-1", sender, 200, true},
		{"/webhooks/api-key-0123", "event=E&id=span-2", "00-zzzz-not-a-trace", 200, false},
		{"/webhook/a", "event=E&token=s3cret-token-a&id=span-3", "00-" + strings.Repeat("a", 300), 200, false},
		{"/webhook/a", "event=E&token=wrong&id=span-4", "", 401, false},
	}
	for _, tc := range cases {
		if got := post(tc.path, tc.body, tc.traceparent); got != tc.status {
			t.Fatalf("POST %s = %d; want %d", tc.path, got, tc.status)
		}
	}
	f.bus.Close()
	if got := post("/webhook/a", "event=E&token=s3cret-token-a&id=span-5", ""); got != 503 {
		t.Fatalf("POST with the bus down = %d; want 503", got)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var reqs []testenv.Span
	publish := map[string]testenv.Span{} // by parent span id
	for _, s := range rec.Spans() {
		switch {
		case strings.HasPrefix(s.Name, "POST "):
			reqs = append(reqs, s)
		case s.Name == "publish hookgate.in":
			publish[s.ParentSpanID] = s
		}
		text := fmt.Sprint(s.Name, s.Attrs, s.Links, s.Events, s.StatusMessage)
		for _, secret := range []string{"s3cret-token-a", "api-key-0123", "wrong"} {
			if strings.Contains(text, secret) {
				t.Errorf("span %s holds %q: %s", s.Name, secret, text)
			}
		}
	}
	if len(reqs) != 5 {
		t.Fatalf("%d request spans; want 5: %+v", len(reqs), reqs)
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Start.Before(reqs[j].Start) })
	f.rec.mu.Lock()
	rows := append([]hookgate.Exchange(nil), f.rec.rows...)
	f.rec.mu.Unlock()
	for i, tc := range append(cases, struct {
		path, body, traceparent string
		status                  int
		link                    bool
	}{"/webhook/a", "", "", 503, false}) {
		s := reqs[i]
		wantName, wantRoute := "POST /webhook/{source}", "/webhook/{source}"
		if strings.HasPrefix(tc.path, "/webhooks/") {
			wantName, wantRoute = "POST /webhooks/{api_key}", "/webhooks/{api_key}"
		}
		if s.Name != wantName || s.Attrs["http.route"] != wantRoute || s.Attrs["http.response.status_code"] != fmt.Sprint(tc.status) || s.ParentSpanID != "" {
			t.Errorf("request %d span %s: %v (parent %q)", i+1, s.Name, s.Attrs, s.ParentSpanID)
		}
		if got := len(s.Links) == 1 && s.Links[0].SpanID == "b7ad6b7169203331" && s.Links[0].Attrs["hookgate.link"] == "sender traceparent"; got != tc.link || (!tc.link && len(s.Links) != 0) {
			t.Errorf("request %d links = %+v; want a link to the sender: %v", i+1, s.Links, tc.link)
		}
		p, published := publish[s.SpanID]
		switch tc.status {
		case 200:
			if !published || p.Attrs["hookgate.duplicate"] != "false" || s.Attrs["hookgate.outcome"] != "accepted" {
				t.Errorf("request %d: publish span %v (found %v), outcome %q", i+1, p.Attrs, published, s.Attrs["hookgate.outcome"])
			}
		case 401:
			if published || s.Attrs["hookgate.error_code"] != "invalid_token" || s.Attrs["hookgate.outcome"] != "rejected" || s.StatusMessage != "" {
				t.Errorf("request %d (401): %v, status %q, published %v; want invalid_token, status unset, no publish", i+1, s.Attrs, s.StatusMessage, published)
			}
		case 503:
			if !published || p.Attrs["hookgate.error_code"] != "unavailable" || s.Attrs["hookgate.error_code"] != "unavailable" || s.StatusMessage != "unavailable" {
				t.Errorf("request %d (503): %v, status %q; publish %v", i+1, s.Attrs, s.StatusMessage, p.Attrs)
			}
		}
		if i < len(rows) && rows[i].TraceID != s.TraceID {
			t.Errorf("history row %d trace_id %q; want the request's trace %s", i+1, rows[i].TraceID, s.TraceID)
		}
	}
}
