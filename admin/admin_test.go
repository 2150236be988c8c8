package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/credential"
	"github.com/hookgate/hookgate/providers/standard"
	"github.com/hookgate/hookgate/routes"
)

const (
	adminToken = "adm-t0ken-9f8e7d"
	form       = "application/x-www-form-urlencoded"
)

// formProvider is a small provider: urlencoded bodies, the credential in
// "token", the event in "event".
type formProvider struct{}

func (formProvider) Parse(r *providers.Request) (*providers.Message, error) {
	v, err := url.ParseQuery(string(r.Body))
	if err != nil || v.Get("event") == "" {
		return nil, hookgate.Errorf(hookgate.EBadRequest, "malformed form")
	}
	return &providers.Message{Event: v.Get("event"), Params: map[string]string{"token": v.Get("token")}}, nil
}

func (formProvider) Verify(ctx context.Context, _ *providers.Request, m *providers.Message, secrets providers.Secrets) error {
	return credential.Check(ctx, secrets, m.Params["token"], hookgate.EInvalidToken, "token")
}

// pickyProvider refuses sources without an event, like a provider whose
// constructor validates its settings.
func pickyProvider(src config.Source) (providers.Provider, error) {
	if src.Event == "" {
		return nil, errors.New("picky: event must be set")
	}
	return formProvider{}, nil
}

// fakeDead is a DeadLetters over a list.
type fakeDead struct {
	mu   sync.Mutex
	list []jobs.DeadJob
}

func (f *fakeDead) Dead(context.Context) ([]jobs.DeadJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]jobs.DeadJob(nil), f.list...), nil
}

func (f *fakeDead) Replay(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.list {
		if d.Job.ID == id {
			f.list = append(f.list[:i], f.list[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("replay %q: %w", id, jobs.ErrNotFound)
}

type adminFixture struct {
	url     string
	gw      *gateway.Gateway
	secrets *testenv.Secrets
	log     *testenv.Buffer
	bus     *events.Bus
	busURL  string // nats:// address of the embedded bus
	store   *events.SourceStore
}

type adminOptions struct {
	bus    *events.Bus // nil = a new embedded bus
	caller admin.Caller
	routes admin.Routes
}

func newAdminFixture(t *testing.T, o adminOptions) *adminFixture {
	t.Helper()
	ctx := context.Background()
	bus, busURL := o.bus, ""
	if bus == nil {
		bcfg := config.Default().Bus
		bcfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		dir := t.TempDir()
		var err error
		bus, err = events.Open(ctx, bcfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		if busURL, err = events.TokenURL(bcfg.Listen, dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
	}
	store, err := events.NewSourceStore(ctx, bus.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	reg := providers.NewRegistry()
	reg.Register("form", func(config.Source) (providers.Provider, error) { return formProvider{}, nil })
	reg.Register("picky", pickyProvider)
	reg.Register("echo", echoProvider)
	reg.Register("standard", standard.Constructor)
	sec := testenv.NewSecrets(map[string]string{
		"a/token":     "s3cret-token-a",
		"rt/token":    "runtime-s3cret",
		"admin/token": adminToken,
	})
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	dead := &fakeDead{list: []jobs.DeadJob{
		{Job: jobs.Job{ID: "job-1"}, LastError: "http 500"},
		{Job: jobs.Job{ID: "evt-7/deal-sync"}, LastError: "http 404"},
	}}
	scfg := config.Default().Server
	scfg.MaxBodyBytes = 4096
	gw, err := gateway.New(scfg, []config.Source{
		{ID: "a", Provider: "form", Secret: "a/token"},
	}, gateway.Deps{Registry: reg, Secrets: sec, Bus: bus, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(gw, reg, sec, admin.Config{
		Token:   "admin/token",
		Sources: store,
		Dead:    dead,
		Caller:  o.caller,
		Routes:  o.routes,
	}, admin.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	api.Mount(gw.App())
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	go gw.Serve(srv.Listener)
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	return &adminFixture{url: "http://" + srv.Listener.Addr().String(), gw: gw, secrets: sec, log: logs, bus: bus, busURL: busURL, store: store}
}

// do sends a request with the admin token (token "" = no Authorization).
func (f *adminFixture) do(t *testing.T, method, path, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.url+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, b, err)
	}
	return resp.StatusCode, out, resp.Header
}

func (f *adminFixture) webhook(t *testing.T, id, token string) int {
	t.Helper()
	resp, err := http.Post(f.url+"/webhook/"+id, form, strings.NewReader("event=E&token="+token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminAuth(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	tests := []struct {
		name   string
		header string
		before func()
		status int
		code   string
	}{
		{"no header", "", nil, 401, "unauthorized"},
		{"not bearer", "Basic " + adminToken, nil, 401, "unauthorized"},
		{"wrong token", "Bearer wrong", nil, 401, "unauthorized"},
		{"token prefix", "Bearer " + adminToken[:5], nil, 401, "unauthorized"},
		{"right token", "Bearer " + adminToken, nil, 200, ""},
		{"lower-case scheme", "bearer " + adminToken, nil, 200, ""},
		{"rotated: old token", "Bearer " + adminToken, func() { f.secrets.Set("admin/token", "rotated-t0ken") }, 401, "unauthorized"},
		{"rotated: new token", "Bearer rotated-t0ken", nil, 200, ""},
		{"store down", "Bearer rotated-t0ken", func() { f.secrets.SetDown(true) }, 503, "unavailable"},
		{"store down, no header", "", nil, 401, "unauthorized"},
	}
	for _, tc := range tests {
		if tc.before != nil {
			tc.before()
		}
		req, _ := http.NewRequest("GET", f.url+"/admin/sources", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		got, _ := body["error"].(string)
		if resp.StatusCode != tc.status || got != tc.code {
			t.Errorf("%s: got %d %s; want %d %q", tc.name, resp.StatusCode, b, tc.status, tc.code)
		}
		if tc.status == 401 && string(b) != `{"error":"unauthorized"}` {
			t.Errorf("%s: body %s; want {\"error\":\"unauthorized\"}", tc.name, b)
		}
		if tc.status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", tc.name)
		}
	}
	// unknown admin paths need the token too
	f.secrets.SetDown(false)
	if status, _, _ := f.do(t, "GET", "/admin/nothing", "", ""); status != 401 {
		t.Errorf("GET /admin/nothing without a token = %d; want 401", status)
	}
	if status, body, _ := f.do(t, "GET", "/admin/nothing", "rotated-t0ken", ""); status != 404 || body["error"] != "not_found" {
		t.Errorf("GET /admin/nothing = %d %v; want 404 not_found", status, body)
	}
}

func TestAdminSources(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	if got := f.webhook(t, "rt", "runtime-s3cret"); got != 404 {
		t.Fatalf("webhook to a source not yet created = %d; want 404", got)
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"create", "PUT", "/admin/sources/rt", `{"provider":"form","secret":"rt/token","event":"E","rate":{"per_second":5,"burst":5}}`, 200, ""},
		{"replace", "PUT", "/admin/sources/rt", `{"provider":"form","secret":"rt/token","auth_parameter":"token","max_body_bytes":2048}`, 200, ""},
		{"file source is read-only", "PUT", "/admin/sources/a", `{"provider":"form","secret":"a/token"}`, 409, "conflict"},
		{"unknown provider", "PUT", "/admin/sources/x", `{"provider":"nope","secret":"x/token"}`, 400, "bad_request"},
		{"missing secret", "PUT", "/admin/sources/x", `{"provider":"form"}`, 400, "bad_request"},
		{"bad id", "PUT", "/admin/sources/-x", `{"provider":"form","secret":"x/token"}`, 400, "bad_request"},
		{"id differs", "PUT", "/admin/sources/x", `{"id":"y","provider":"form","secret":"x/token"}`, 400, "bad_request"},
		{"unknown field", "PUT", "/admin/sources/x", `{"provider":"form","secret":"x/token","colour":"red"}`, 400, "bad_request"},
		{"malformed", "PUT", "/admin/sources/x", `{"provider":`, 400, "bad_request"},
		{"bad rate", "PUT", "/admin/sources/x", `{"provider":"form","secret":"x/token","rate":{"per_second":0,"burst":1}}`, 400, "bad_request"},
		{"provider refuses", "PUT", "/admin/sources/x", `{"provider":"picky","secret":"x/token"}`, 400, "bad_request"},
		{"provider accepts", "PUT", "/admin/sources/p", `{"provider":"picky","secret":"x/token","event":"ping"}`, 200, ""},
		{"delete file source", "DELETE", "/admin/sources/a", "", 409, "conflict"},
		{"delete absent", "DELETE", "/admin/sources/nope", "", 404, "not_found"},
		{"delete", "DELETE", "/admin/sources/p", "", 200, ""},
		{"delete again", "DELETE", "/admin/sources/p", "", 404, "not_found"},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, tc.method, tc.path, adminToken, tc.body)
		got, _ := body["error"].(string)
		if status != tc.status || got != tc.code {
			t.Errorf("%s: %s %s = %d %v; want %d %q", tc.name, tc.method, tc.path, status, body, tc.status, tc.code)
		}
		if status >= 400 && status < 500 && body["message"] == nil {
			t.Errorf("%s: %d without a message", tc.name, status)
		}
		if tc.name == "replace" && (body["id"] != "rt" || body["runtime"] != true || body["max_body_bytes"] != 2048.0) {
			t.Errorf("replace answered %v; want the source with runtime true", body)
		}
	}
	// the runtime source is served at once by this instance
	if got := f.webhook(t, "rt", "runtime-s3cret"); got != 200 {
		t.Errorf("webhook to the created source = %d; want 200", got)
	}
	if got := f.webhook(t, "rt", "wrong"); got != 401 {
		t.Errorf("webhook with a wrong token = %d; want 401", got)
	}
	// and persisted
	stored, err := f.store.List(context.Background())
	if err != nil || len(stored) != 1 || stored[0].ID != "rt" || stored[0].MaxBodyBytes != 2048 {
		t.Errorf("store holds %+v, %v; want the replaced rt only", stored, err)
	}

	status, body, _ := f.do(t, "GET", "/admin/sources", adminToken, "")
	if status != 200 {
		t.Fatalf("GET /admin/sources = %d %v", status, body)
	}
	list, _ := body["sources"].([]any)
	var ids []string
	for _, x := range list {
		m := x.(map[string]any)
		ids = append(ids, fmt.Sprintf("%v:%v:%v", m["id"], m["runtime"], m["secret"]))
	}
	if got, want := strings.Join(ids, " "), "a:false:a/token rt:true:rt/token"; got != want {
		t.Errorf("GET /admin/sources = %s; want %s", got, want)
	}

	// a secret value put where a reference belongs is never printed back
	status, body, _ = f.do(t, "PUT", "/admin/sources/leak", adminToken, `{"provider":"form","secret":"s3cret-token-a"}`)
	if status != 200 {
		t.Fatalf("PUT leak = %d %v", status, body)
	}
	_, listing, _ := f.do(t, "GET", "/admin/sources", adminToken, "")
	for _, b := range []map[string]any{body, listing} {
		if j, _ := json.Marshal(b); strings.Contains(string(j), "s3cret-token-a") {
			t.Errorf("admin answer prints a secret value: %s", j)
		}
	}

	// deleting takes effect at once
	if status, body, _ := f.do(t, "DELETE", "/admin/sources/rt", adminToken, ""); status != 200 || body["status"] != "deleted" {
		t.Errorf("DELETE rt = %d %v", status, body)
	}
	if got := f.webhook(t, "rt", "runtime-s3cret"); got != 404 {
		t.Errorf("webhook to the deleted source = %d; want 404", got)
	}
}

func TestAdminDeadLetters(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	status, body, _ := f.do(t, "GET", "/admin/dead", adminToken, "")
	dead, _ := body["dead"].([]any)
	if status != 200 || len(dead) != 2 || dead[0].(map[string]any)["job"].(map[string]any)["id"] != "job-1" {
		t.Fatalf("GET /admin/dead = %d %v; want job-1 and evt-7/deal-sync", status, body)
	}
	tests := []struct {
		name, id string
		status   int
		want     string
	}{
		{"replay", "job-1", 200, "replayed"},
		{"replay again", "job-1", 404, "not_found"},
		{"unknown", "job-2", 404, "not_found"},
		{"route job id with a slash", "evt-7%2Fdeal-sync", 200, "replayed"},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, "POST", "/admin/dead/"+tc.id+"/replay", adminToken, "")
		got := body["error"]
		if status == 200 {
			got = body["status"]
		}
		if status != tc.status || got != tc.want {
			t.Errorf("%s: POST replay %s = %d %v; want %d %q", tc.name, tc.id, status, body, tc.status, tc.want)
		}
	}
	if _, body, _ := f.do(t, "GET", "/admin/dead", adminToken, ""); len(body["dead"].([]any)) != 0 {
		t.Errorf("GET /admin/dead after replay = %v; want none", body)
	}
}

// callerFunc is a Caller from a function.
type callerFunc func(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error)

func (f callerFunc) Call(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error) {
	return f(ctx, portal, method, params)
}

func TestAdminCall(t *testing.T) {
	caller := callerFunc(func(_ context.Context, portal, method string, params map[string]any) (json.RawMessage, error) {
		switch {
		case portal != "main":
			return nil, hookgate.Errorf(hookgate.ENotFound, "unknown portal %q", portal)
		case method == "crm.deal.get":
			id := params["id"]
			return json.RawMessage(fmt.Sprintf(`{"ID":"%v","TITLE":"Deal"}`, id)), nil
		case method == "breaker":
			return nil, fmt.Errorf("call: %w", outbound.ErrCircuitOpen)
		}
		return nil, &outbound.APIError{Code: outbound.CodeMethodNotFound, Description: "Method not found!", Status: 404}
	})
	f := newAdminFixture(t, adminOptions{caller: caller})
	tests := []struct {
		name, path, body string
		status           int
		check            func(map[string]any) bool
	}{
		{"ok", "/admin/call/main/crm.deal.get", `{"id":9}`, 200, func(b map[string]any) bool {
			r, _ := b["result"].(map[string]any)
			return r["ID"] == "9"
		}},
		{"no body", "/admin/call/main/crm.deal.get", "", 200, func(b map[string]any) bool { return b["result"] != nil }},
		{"api error keeps the Bitrix24 code", "/admin/call/main/crm.nope", `{}`, 502, func(b map[string]any) bool {
			return b["error"] == "ERROR_METHOD_NOT_FOUND" && b["error_description"] == "Method not found!" && b["status"] == 404.0
		}},
		{"unknown portal", "/admin/call/other/crm.deal.get", `{}`, 404, func(b map[string]any) bool { return b["error"] == "not_found" }},
		{"circuit open", "/admin/call/main/breaker", `{}`, 503, func(b map[string]any) bool { return b["error"] == "unavailable" }},
		{"params not an object", "/admin/call/main/crm.deal.get", `[1]`, 400, func(b map[string]any) bool { return b["error"] == "bad_request" }},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, "POST", tc.path, adminToken, tc.body)
		if status != tc.status || !tc.check(body) {
			t.Errorf("%s: POST %s = %d %v; want %d", tc.name, tc.path, status, body, tc.status)
		}
	}
	// without a Caller the endpoint is absent
	g := newAdminFixture(t, adminOptions{})
	if status, _, _ := g.do(t, "POST", "/admin/call/main/x", adminToken, `{}`); status != 404 {
		t.Errorf("POST /admin/call without a Caller = %d; want 404", status)
	}
}

// Every admin request is logged with method, path, status and remote
// address, and never with the token or a body.
func TestAdminRequestsLogged(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	f.do(t, "GET", "/admin/sources", "wrong-token-zz", "")
	f.do(t, "PUT", "/admin/sources/logged", adminToken, `{"provider":"form","secret":"rt/token","event":"body-marker-77"}`)
	logs := f.log.String()
	for _, want := range []string{
		`msg="admin request" method=GET path=/admin/sources status=401 remote_addr=127.0.0.1`,
		`msg="admin request" method=PUT path=/admin/sources/logged status=200 remote_addr=127.0.0.1`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{adminToken, "wrong-token-zz", "body-marker-77", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
}

// Two gateways on one NATS: a source created through instance A is
// accepted by instance B within 1 s, through B's watch of the KV bucket.
func TestRuntimeSourceReachesOtherInstance(t *testing.T) {
	a := newAdminFixture(t, adminOptions{})
	busB, err := events.Connect(a.busURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busB.Close() })
	b := newAdminFixture(t, adminOptions{bus: busB})
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- b.store.Watch(ctx, func(srcs []config.Source) {
			if err := b.gw.SetRuntimeSources(srcs); err != nil {
				t.Errorf("SetRuntimeSources: %v", err)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-watchDone; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	if got := b.webhook(t, "shared", "runtime-s3cret"); got != 404 {
		t.Fatalf("B before the PUT = %d; want 404", got)
	}
	status, body, _ := a.do(t, "PUT", "/admin/sources/shared", adminToken, `{"provider":"form","secret":"rt/token"}`)
	if status != 200 {
		t.Fatalf("PUT through A = %d %v", status, body)
	}
	put := time.Now()
	for {
		got := b.webhook(t, "shared", "runtime-s3cret")
		if got == 200 {
			t.Logf("B accepted the source %v after the PUT", time.Since(put).Round(time.Millisecond))
			break
		}
		if time.Since(put) > time.Second {
			t.Fatalf("B answers %d 1 s after the PUT through A; want 200", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// B lists it as a runtime source; a delete through B reaches A
	if src, runtime, ok := b.gw.Source("shared"); !ok || !runtime || src.Secret != "rt/token" {
		t.Errorf("B.Source(shared) = %+v, %v, %v", src, runtime, ok)
	}
	aCtx, aCancel := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.store.Watch(aCtx, func(srcs []config.Source) { _ = a.gw.SetRuntimeSources(srcs) })
	}()
	defer func() { aCancel(); <-aDone }()
	if status, body, _ := b.do(t, "DELETE", "/admin/sources/shared", adminToken, ""); status != 200 {
		t.Fatalf("DELETE through B = %d %v", status, body)
	}
	del := time.Now()
	for a.webhook(t, "shared", "runtime-s3cret") != 404 {
		if time.Since(del) > time.Second {
			t.Fatal("A still serves the source 1 s after the DELETE through B")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeRoutes is a Routes over a list of names and disabled routes.
type fakeRoutes struct {
	mu       sync.Mutex
	names    []string
	disabled []routes.DisabledRoute
}

func (f *fakeRoutes) Routes() []string { return f.names }

func (f *fakeRoutes) Disabled(context.Context) ([]routes.DisabledRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]routes.DisabledRoute(nil), f.disabled...), nil
}

func (f *fakeRoutes) Enable(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.disabled {
		if d.Route == name {
			f.disabled = append(f.disabled[:i], f.disabled[i+1:]...)
		}
	}
	return nil
}

// The disabled routes are listed (null when there are none, as before) and
// a configured route can be re-enabled; an unknown one is a 404.
func TestAdminRoutes(t *testing.T) {
	rt := &fakeRoutes{names: []string{"deal-sync", "other"}, disabled: []routes.DisabledRoute{{Route: "deal-sync", URL: "https://platform.example/hooks", Error: "http 410"}}}
	f := newAdminFixture(t, adminOptions{routes: rt})
	status, body, _ := f.do(t, "GET", "/admin/routes/disabled", adminToken, "")
	list, _ := body["disabled"].([]any)
	if status != 200 || len(list) != 1 || list[0].(map[string]any)["route"] != "deal-sync" {
		t.Fatalf("GET /admin/routes/disabled = %d %v; want deal-sync", status, body)
	}
	tests := []struct {
		name, route string
		status      int
		want        string
	}{
		{"unknown route", "nope", 404, "not_found"},
		{"enable", "deal-sync", 200, "enabled"},
		{"enable a route that is not disabled", "other", 200, "enabled"},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, "POST", "/admin/routes/"+tc.route+"/enable", adminToken, "")
		got := body["error"]
		if status == 200 {
			got = body["status"]
		}
		if status != tc.status || got != tc.want {
			t.Errorf("%s: POST enable %s = %d %v; want %d %q", tc.name, tc.route, status, body, tc.status, tc.want)
		}
	}
	if _, body, _ := f.do(t, "GET", "/admin/routes/disabled", adminToken, ""); body["disabled"] != nil {
		t.Errorf("GET /admin/routes/disabled after enable = %v; want none", body)
	}
	// without Routes the endpoints are absent
	g := newAdminFixture(t, adminOptions{})
	if status, _, _ := g.do(t, "GET", "/admin/routes/disabled", adminToken, ""); status != 404 {
		t.Errorf("GET /admin/routes/disabled without Routes = %d; want 404", status)
	}
}

// No admin answer, whatever the failure, carries a secret value.
func TestNoSecretInErrors(t *testing.T) {
	const secretA = "s3cret-token-a" // the value of a/token
	f := newAdminFixture(t, adminOptions{})
	tests := []struct {
		name, method, path, body, token string
	}{
		{"secret value as reference", "PUT", "/admin/sources/x", `{"provider":"form","secret":"/` + secretA + `"}`, adminToken},
		{"bad token", "GET", "/admin/sources", "", secretA},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, f.url+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: %d %s; want an error", tc.name, resp.StatusCode, b)
		}
		var hdrs strings.Builder
		resp.Header.Write(&hdrs)
		if strings.Contains(string(b), secretA) || strings.Contains(hdrs.String(), secretA) {
			t.Errorf("%s: answer holds the secret: %d %s", tc.name, resp.StatusCode, b)
		}
	}
}

func TestNewRefusesMissingParts(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	reg, sec := providers.NewRegistry(), testenv.NewSecrets(nil)
	tests := []struct {
		name string
		gw   *gateway.Gateway
		reg  *providers.Registry
		c    admin.Config
	}{
		{"no gateway", nil, reg, admin.Config{Token: "admin/token", Sources: f.store}},
		{"no registry", f.gw, nil, admin.Config{Token: "admin/token", Sources: f.store}},
		{"no token", f.gw, reg, admin.Config{Sources: f.store}},
		{"no source store", f.gw, reg, admin.Config{Token: "admin/token"}},
	}
	for _, tc := range tests {
		if _, err := admin.New(tc.gw, tc.reg, sec, tc.c); err == nil {
			t.Errorf("New(%s) = nil error; want an error", tc.name)
		}
	}
}

// echoProvider refuses every source with an error that quotes its
// settings, as a careless constructor might.
func echoProvider(src config.Source) (providers.Provider, error) {
	return nil, fmt.Errorf("echo: cannot use secret %q with options %q", src.Secret, src.Options)
}

// PUT /admin/sources/{id} never repeats, in its answer or its error
// message, a value the caller sent in a secret-bearing field: secret (a
// reference, where a value is sometimes pasted) and options whose name
// looks sensitive. Values the store never served are not caught by its
// redaction, so these are.
func TestAdminDoesNotEchoSentSecrets(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	const val = "Pasted-V4lue-9z"
	tests := []struct {
		name, id, body string
		status         int
		hidden         []string // must not appear in the answer
	}{
		{"bad secret reference", "s1", `{"provider":"form","secret":"/` + val + `#x"}`, 400, []string{val}},
		{"bad secret reference with quotes", "s2", `{"provider":"form","secret":"/` + val + `\"q#"}`, 400, []string{val}},
		{"value as reference, accepted", "s3", `{"provider":"form","secret":"` + val + `"}`, 200, []string{val}},
		{"sensitive option, accepted", "s4", `{"provider":"form","secret":"rt/token","options":{"api_token":"` + val + `"}}`, 200, []string{val}},
		{"provider quotes its settings", "s5", `{"provider":"echo","secret":"` + val + `","options":{"client_secret":"0pt-` + val + `","colour":"red"}}`, 400, []string{val, "0pt-"}},
		{"unknown provider, bad reference", "s6", `{"provider":"nope","secret":"#` + val + `"}`, 400, []string{val}},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, "PUT", "/admin/sources/"+tc.id, adminToken, tc.body)
		j, _ := json.Marshal(body)
		if status != tc.status {
			t.Errorf("%s: %d %s; want %d", tc.name, status, j, tc.status)
		}
		for _, h := range tc.hidden {
			if strings.Contains(string(j), h) {
				t.Errorf("%s: answer %s repeats %q", tc.name, j, h)
			}
		}
	}
	// the listing shows references, never a sensitive option's value
	_, listing, _ := f.do(t, "GET", "/admin/sources", adminToken, "")
	if j, _ := json.Marshal(listing); strings.Contains(string(j), `"api_token":"`+val) {
		t.Errorf("GET /admin/sources shows a sensitive option: %s", j)
	}
	if strings.Contains(f.log.String(), "0pt-"+val) {
		t.Errorf("the log holds a sensitive option value")
	}
}

// PUT /admin/sources reports a source's problems at the key paths config
// validation uses, under "source".
func TestAdminSourceOptions(t *testing.T) {
	f := newAdminFixture(t, adminOptions{})
	tests := []struct {
		name, body string
		status     int
		want       []string // in the message
	}{
		{"bad value", `{"provider":"standard","secret":"x/token","options":{"tolerance":"soon"}}`, 400, []string{"source.options.tolerance: "}},
		{"negative", `{"provider":"standard","secret":"x/token","options":{"tolerance":"-1m"}}`, 400, []string{"source.options.tolerance: must not be negative"}},
		{"unknown and bad", `{"provider":"standard","secret":"x/token","options":{"tolerance":"soon","colour":"red"}}`, 400,
			[]string{"source.options.colour: unknown option", "source.options.tolerance: "}},
		{"good", `{"provider":"standard","secret":"x/token","options":{"tolerance":"10m"}}`, 200, nil},
	}
	for _, tc := range tests {
		status, body, _ := f.do(t, "PUT", "/admin/sources/std", adminToken, tc.body)
		msg, _ := body["message"].(string)
		if status != tc.status {
			t.Errorf("PUT %s = %d %v; want %d", tc.name, status, body, tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("PUT %s: message %q; want it to contain %q", tc.name, msg, w)
			}
		}
	}
}
