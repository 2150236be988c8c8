package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers"
)

// formProvider is a small provider for gateway tests: urlencoded bodies,
// the credential in "token", the event in "event", the dedup key in "id".
type formProvider struct{}

func (formProvider) Parse(r *providers.Request) (*providers.Message, error) {
	if !strings.HasPrefix(r.ContentType, "application/x-www-form-urlencoded") {
		return nil, hookgate.Errorf(hookgate.EUnsupportedMedia, "want a form")
	}
	if len(r.Body) == 0 {
		return nil, hookgate.Errorf(hookgate.EBadRequest, "empty body")
	}
	v, err := url.ParseQuery(string(r.Body))
	if err != nil || v.Get("event") == "" {
		return nil, hookgate.Errorf(hookgate.EBadRequest, "malformed form")
	}
	p := map[string]string{}
	for k := range v {
		p[k] = v.Get(k)
	}
	return &providers.Message{Event: v.Get("event"), Params: p, DedupKey: v.Get("id")}, nil
}

func (formProvider) Verify(ctx context.Context, r *providers.Request, m *providers.Message, secrets providers.Secrets) error {
	tok := m.Params["token"]
	if tok == "" {
		tok = r.PathKey
	}
	if tok == "" {
		return hookgate.Errorf(hookgate.EInvalidToken, "missing")
	}
	vals, err := secrets(ctx)
	if err != nil {
		return err
	}
	for _, v := range vals {
		if v.Reveal() == tok {
			return nil
		}
	}
	return hookgate.Errorf(hookgate.EInvalidToken, "wrong")
}

type keyProvider struct{ formProvider }

func (keyProvider) KeyRouted() bool { return true }

type recorder struct {
	mu   sync.Mutex
	rows []hookgate.Exchange
}

func (r *recorder) Record(x hookgate.Exchange) {
	r.mu.Lock()
	r.rows = append(r.rows, x)
	r.mu.Unlock()
}

type fixture struct {
	srv     *httptest.Server
	bus     *events.Bus
	secrets *testenv.Secrets
	rec     *recorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	bus := newBus(t)
	reg := providers.NewRegistry()
	reg.Register("form", func(config.Source) (providers.Provider, error) { return formProvider{}, nil })
	reg.Register("key", func(config.Source) (providers.Provider, error) { return keyProvider{}, nil })
	sec := testenv.NewSecrets(map[string]string{"a/token": "s3cret-token-a", "k/key": "api-key-0123"})
	rec := &recorder{}
	scfg := config.Default().Server
	scfg.MaxBodyBytes = 1024
	gw, err := gateway.New(scfg, []config.Source{
		{ID: "a", Provider: "form", Secret: "a/token"},
		{ID: "small", Provider: "form", Secret: "a/token", MaxBodyBytes: 100},
		{ID: "k", Provider: "key", Secret: "k/key"},
	}, gateway.Deps{Registry: reg, Secrets: sec, Bus: bus, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Close()
	ln := srv.Listener
	_ = ln
	f := &fixture{bus: bus, secrets: sec, rec: rec}
	f.srv = serveFiber(t, gw)
	return f
}

// newBus opens an embedded bus for one test.
func newBus(t testing.TB) *events.Bus {
	t.Helper()
	bcfg := config.Default().Bus
	bcfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bus, err := events.Open(context.Background(), bcfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func serveFiber(t testing.TB, gw *gateway.Gateway) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	go gw.Serve(s.Listener)
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	s.URL = "http://" + s.Listener.Addr().String()
	return s
}

func (f *fixture) post(t *testing.T, method, path, ctype, body string) (int, map[string]string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]string{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, b, err)
	}
	return resp.StatusCode, out, resp.Header
}

const form = "application/x-www-form-urlencoded"

func TestAnswersTable(t *testing.T) {
	f := newFixture(t)
	big := "event=E&token=s3cret-token-a&pad=" + strings.Repeat("x", 2000)
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string // "error" field, or "status" for 200s
		before                          func()
	}{
		{"accepted", "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=1", 200, "accepted", nil},
		{"duplicate", "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=1", 200, "duplicate", nil},
		{"unknown source", "POST", "/webhook/nope", form, "event=E", 404, "unknown_source", nil},
		{"unknown api key", "POST", "/webhooks/wrong-key", form, "event=E", 404, "unknown_source", nil},
		{"api key accepted", "POST", "/webhooks/api-key-0123", form, "event=E&id=7", 200, "accepted", nil},
		{"wrong token", "POST", "/webhook/a", form, "event=E&token=nope", 401, "invalid_token", nil},
		{"missing token", "POST", "/webhook/a", form, "event=E", 401, "invalid_token", nil},
		{"GET", "GET", "/webhook/a", "", "", 405, "method_not_allowed", nil},
		{"PUT on api key route", "PUT", "/webhooks/api-key-0123", form, "event=E", 405, "method_not_allowed", nil},
		{"over server limit", "POST", "/webhook/a", form, big, 413, "body_too_large", nil},
		{"over source limit", "POST", "/webhook/small", form, "event=E&token=s3cret-token-a&pad=" + strings.Repeat("y", 200), 413, "body_too_large", nil},
		{"media type", "POST", "/webhook/a", "application/xml", "<x/>", 415, "unsupported_media_type", nil},
		{"empty body", "POST", "/webhook/a", form, "", 400, "bad_request", nil},
		{"malformed", "POST", "/webhook/a", form, "%zz", 400, "bad_request", nil},
		{"secret store down", "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=2", 503, "unavailable", func() { f.secrets.SetDown(true) }},
		{"bus down", "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=3", 503, "unavailable", func() {
			f.secrets.SetDown(false)
			f.bus.Close()
		}},
	}
	for _, tc := range tests {
		if tc.before != nil {
			tc.before()
		}
		status, body, hdr := f.post(t, tc.method, tc.path, tc.ctype, tc.body)
		got := body["error"]
		if status == 200 {
			got = body["status"]
			if body["id"] == "" {
				t.Errorf("%s: 200 without an id: %v", tc.name, body)
			}
		}
		if status != tc.status || got != tc.code {
			t.Errorf("%s: got %d %q (%v); want %d %q", tc.name, status, got, body, tc.status, tc.code)
		}
		if status == 405 && hdr.Get("Allow") != "POST" {
			t.Errorf("%s: Allow = %q; want POST", tc.name, hdr.Get("Allow"))
		}
		if status == 503 && hdr.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", tc.name)
		}
		if status == 400 && body["message"] == "" {
			t.Errorf("%s: 400 without a message", tc.name)
		}
	}
	// every request is one history row, with the secrets redacted
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	if len(f.rec.rows) != len(tests) {
		t.Errorf("history rows = %d; want %d", len(f.rec.rows), len(tests))
	}
	for _, r := range f.rec.rows {
		b, _ := json.Marshal(r)
		for _, s := range []string{"s3cret-token-a", "api-key-0123"} {
			if strings.Contains(string(b), s) {
				t.Errorf("history row holds a secret: %s", b)
			}
		}
	}
}

func TestDuplicateKeepsFirstID(t *testing.T) {
	f := newFixture(t)
	_, first, _ := f.post(t, "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=42")
	_, second, _ := f.post(t, "POST", "/webhook/a", form, "event=E&token=s3cret-token-a&id=42")
	if first["status"] != "accepted" || second["status"] != "duplicate" || first["id"] != second["id"] {
		t.Errorf("got %v then %v; want accepted then duplicate with the same id", first, second)
	}
	// exactly one message stored
	info, err := f.bus.JetStream().Stream(context.Background(), "HOOKGATE")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := info.Info(context.Background())
	if st.State.Msgs != 1 {
		t.Errorf("stream holds %d messages; want 1", st.State.Msgs)
	}
}

func TestEventEnvelopeRedacted(t *testing.T) {
	f := newFixture(t)
	sub, err := f.bus.Conn().SubscribeSync("hookgate.in.>")
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ := f.post(t, "POST", "/webhook/a?refresh_token=rt-999999", form, "event=ONCRMDEALADD&token=s3cret-token-a&data%5BFIELDS%5D%5BID%5D=9")
	if status != 200 {
		t.Fatalf("status %d %v", status, body)
	}
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "hookgate.in.a.ONCRMDEALADD" {
		t.Errorf("subject = %q", m.Subject)
	}
	var ev hookgate.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != body["id"] || ev.SpecVersion != "1.0" || ev.Source != "hookgate/a" || ev.Type != "ONCRMDEALADD" {
		t.Errorf("envelope = %+v", ev)
	}
	if ev.Data.Params["data[FIELDS][ID]"] != "9" || ev.Data.Params["token"] != hookgate.Redacted {
		t.Errorf("params = %v", ev.Data.Params)
	}
	if strings.Contains(string(m.Data), "s3cret-token-a") {
		t.Errorf("event holds the secret: %s", m.Data)
	}
}

// The history row keeps its URL and method after the request is over:
// fasthttp reuses the buffers Fiber's Path and Method point into, so the
// row must hold copies (a row queued for ClickHouse once showed the path
// of a later request).
func TestRowOutlivesRequest(t *testing.T) {
	f := newFixture(t)
	type call struct{ method, path string }
	var calls []call
	for i := range 40 {
		c := call{"POST", fmt.Sprintf("/webhook/unknown-%03d", i)}
		switch i % 4 {
		case 1:
			c = call{"POST", "/webhook/a"}
		case 2:
			c = call{"PATCH", fmt.Sprintf("/webhook/other-%03d-xx", i)}
		}
		calls = append(calls, c)
		req, _ := http.NewRequest(c.method, f.srv.URL+c.path, strings.NewReader("event=E&token=s3cret-token-a&id="+strconv.Itoa(i)))
		req.Header.Set("Content-Type", form)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	if len(f.rec.rows) != len(calls) {
		t.Fatalf("%d rows; want %d", len(f.rec.rows), len(calls))
	}
	for i, x := range f.rec.rows {
		if x.URL != calls[i].path || x.HTTPMethod != calls[i].method {
			t.Errorf("row %d: %s %s; want %s %s", i, x.HTTPMethod, x.URL, calls[i].method, calls[i].path)
		}
	}
}

func TestMetricsMounted(t *testing.T) {
	bus := newBus(t)
	gw, err := gateway.New(config.Default().Server, nil, gateway.Deps{
		Registry: providers.NewRegistry(), Secrets: testenv.NewSecrets(nil), Bus: bus,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hookgate_test_total 1\n") }),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveFiber(t, gw)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hookgate_test_total 1\n" {
		t.Errorf("GET /metrics = %d %q", resp.StatusCode, b)
	}
}
