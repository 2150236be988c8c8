package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/routes"
)

const (
	adminTok  = "admin-token-unit-3k9d"
	srcSecret = "source-secret-unit-7h2x"
)

// fakeSources is the admin API's source operations over a list.
type fakeSources struct {
	mu    sync.Mutex
	list  []gateway.SourceInfo
	puts  []admin.SourceBody
	dels  []string
	err   error // returned by PutSource and DeleteSource when set
	panic bool  // Sources panics
}

func (f *fakeSources) Sources() []gateway.SourceInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panic {
		panic("sources broke: " + srcSecret)
	}
	return append([]gateway.SourceInfo(nil), f.list...)
}

func (f *fakeSources) PutSource(_ context.Context, id string, b admin.SourceBody) (gateway.SourceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return gateway.SourceInfo{}, f.err
	}
	f.puts = append(f.puts, b)
	s := gateway.SourceInfo{Source: config.Source{ID: id, Provider: b.Provider, Secret: b.Secret}, Runtime: true}
	f.list = append(f.list, s)
	return s, nil
}

func (f *fakeSources) DeleteSource(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.dels = append(f.dels, id)
	return nil
}

type fakeDead struct {
	mu       sync.Mutex
	jobs     []jobs.DeadJob
	replayed []string
}

func (f *fakeDead) Dead(context.Context) ([]jobs.DeadJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]jobs.DeadJob(nil), f.jobs...), nil
}

func (f *fakeDead) Replay(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.jobs {
		if d.Job.ID == id {
			f.jobs = append(f.jobs[:i], f.jobs[i+1:]...)
			f.replayed = append(f.replayed, id)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", jobs.ErrNotFound, id)
}

type fakeRoutes struct {
	mu       sync.Mutex
	disabled []routes.DisabledRoute
	enabled  []string
}

func (f *fakeRoutes) Routes() []string { return []string{"deal-sync", "gone"} }
func (f *fakeRoutes) Disabled(context.Context) ([]routes.DisabledRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]routes.DisabledRoute(nil), f.disabled...), nil
}
func (f *fakeRoutes) Enable(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enabled = append(f.enabled, name)
	f.disabled = nil
	return nil
}

// fakeHistory answers every search with rows.
type fakeHistory struct {
	analytics.Browser // nil: a method not overridden panics
	rows              []hookgate.Exchange
	filters           []analytics.Filter
}

func (f *fakeHistory) Search(_ context.Context, fl analytics.Filter) ([]hookgate.Exchange, error) {
	f.filters = append(f.filters, fl)
	return f.rows, nil
}

func (f *fakeHistory) Exchange(_ context.Context, id string) (hookgate.Exchange, error) {
	for _, x := range f.rows {
		if x.ExchangeID == id {
			return x, nil
		}
	}
	return hookgate.Exchange{}, analytics.ErrNotFound
}

func (f *fakeHistory) Trace(_ context.Context, id string) ([]hookgate.Exchange, error) {
	var out []hookgate.Exchange
	for _, x := range f.rows {
		if x.EventID == id {
			out = append(out, x)
		}
	}
	return out, nil
}

func (f *fakeHistory) Summary(context.Context, string, time.Time) ([]analytics.SummaryRow, error) {
	return []analytics.SummaryRow{
		{Direction: hookgate.Inbound, Source: "b24", Outcome: "accepted", Count: 3},
		{Direction: hookgate.Inbound, Source: "b24", Outcome: "rejected", Count: 1},
		{Direction: hookgate.Outbound, Source: "main", Operation: "crm.deal.get", Outcome: "retry", Count: 2, LastError: "QUERY_LIMIT_EXCEEDED"},
	}, nil
}

func (f *fakeHistory) Series(context.Context, time.Time, time.Duration) ([]analytics.Point, error) {
	return nil, nil
}

func (f *fakeHistory) Reasons(context.Context, time.Time) ([]analytics.Reason, error) {
	return []analytics.Reason{{Source: "b24", Error: "invalid_token", Count: 1}}, nil
}

type harness struct {
	app     *fiber.App
	con     *Console
	secrets *testenv.Secrets
	sources *fakeSources
	dead    *fakeDead
	routes  *fakeRoutes
	hist    *fakeHistory
	now     time.Time
	mu      sync.Mutex
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		secrets: testenv.NewSecrets(map[string]string{"admin/token": adminTok, "src/ok": srcSecret}),
		sources: &fakeSources{list: []gateway.SourceInfo{
			{Source: config.Source{ID: "b24", Provider: "bitrix24", Secret: "src/ok"}},
			{Source: config.Source{ID: "ci", Provider: "token", Secret: "src/missing"}, Runtime: true},
		}},
		dead: &fakeDead{jobs: []jobs.DeadJob{
			{Job: jobs.Job{ID: "ev1/deal-sync", Kind: routes.JobKind, EventID: "ev1", Payload: []byte(`{"route":"deal-sync"}`)}, Attempts: 1, LastError: "ERROR_METHOD_NOT_FOUND"},
			{Job: jobs.Job{ID: "ev2/deal-sync", Kind: routes.JobKind, EventID: "ev2", Payload: []byte(`{"route":"deal-sync"}`)}, Attempts: 4, LastError: "platform 503"},
			{Job: jobs.Job{ID: "ev3/deal-sync", Kind: routes.JobKind, EventID: "ev3", Payload: []byte(`{"route":"deal-sync","secret":"` + srcSecret + `"}`)}, Attempts: 4, LastError: "bad " + srcSecret},
		}},
		routes: &fakeRoutes{disabled: []routes.DisabledRoute{{Route: "gone", URL: "https://platform.example/x", Error: "410 Gone"}}},
		hist: &fakeHistory{rows: []hookgate.Exchange{{
			TS: time.Now(), ExchangeID: "11111111-2222-4333-8444-555555555555", EventID: "ev1", Direction: hookgate.Inbound,
			Source: "b24", Event: "ONCRMDEALADD", Status: 200, Outcome: "accepted",
			RequestHeaders: `{"X-Token":"` + srcSecret + `"}`, RequestBody: "auth[application_token]=" + srcSecret,
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		}}},
		now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}
	con, err := New(Config{
		Token: "admin/token", Secrets: h.secrets, Sources: h.sources, Providers: []string{"bitrix24", "token"},
		History: h.hist, Dead: h.dead, Routes: h.routes, SessionTTL: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now },
		RouteLag: func(context.Context) (Lag, error) {
			return Lag{Events: 7, Jobs: map[string]RouteJobs{"deal-sync": {Waiting: 2, Oldest: h.now.Add(-90 * time.Second)}}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	con.logins = newLoginLimiter(rate.Inf, 1, rate.Inf, 1) // TestLoginLimit checks the real one
	h.con = con
	h.app = fiber.New(fiber.Config{DisableStartupMessage: true})
	con.Mount(h.app)
	return h
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

// do sends one request; form, when not nil, is the urlencoded body.
func (h *harness) do(t testing.TB, method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "http://console.test"+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// login logs in and returns the cookie header and the CSRF token.
func (h *harness) login(t testing.TB) (cookie, csrf string) {
	t.Helper()
	resp, _ := h.do(t, "POST", "/console/login", url.Values{"token": {adminTok}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d; want 303", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c.Name + "=" + c.Value
		}
	}
	_, page := h.do(t, "GET", "/console/sources", nil, map[string]string{"Cookie": cookie})
	m := regexp.MustCompile(`name="_csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the sources page:\n%s", page)
	}
	return cookie, m[1]
}

var pages = []string{"/console/", "/console/sources", "/console/sources/new", "/console/sources/edit/ci", "/console/live",
	"/console/history", "/console/history?source=b24", "/console/history/exchange/11111111-2222-4333-8444-555555555555",
	"/console/history/trace/ev1", "/console/dead", "/console/dead/job?id=ev1%2Fdeal-sync", "/console/routes"}

var actions = []string{"/console/logout", "/console/sources", "/console/sources/delete/ci", "/console/dead/replay", "/console/routes/enable/gone"}

func TestWithoutSession(t *testing.T) {
	h := newHarness(t)
	for _, p := range pages {
		resp, body := h.do(t, "GET", p, nil, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login?next=") || body != "" {
			t.Errorf("GET %s without a session: %d %q, %d bytes; want 303 to the login page, no content", p, resp.StatusCode, loc, len(body))
		}
		resp, _ = h.do(t, "GET", p, nil, map[string]string{"HX-Request": "true"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("htmx GET %s without a session: %d; want 401", p, resp.StatusCode)
		}
		// an unknown or expired cookie is no session either
		resp, _ = h.do(t, "GET", p, nil, map[string]string{"Cookie": cookieName + "=forged"})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("GET %s with a forged cookie: %d; want 303", p, resp.StatusCode)
		}
	}
	if resp, _ := h.do(t, "GET", "/console/live/stream", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET the live stream without a session: %d; want 401", resp.StatusCode)
	}
	for _, p := range actions {
		resp, _ := h.do(t, "POST", p, url.Values{"id": {"ev1/deal-sync"}, "_csrf": {"x"}}, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d; want 401", p, resp.StatusCode)
		}
	}
	if len(h.sources.dels)+len(h.sources.puts)+len(h.dead.replayed)+len(h.routes.enabled) != 0 {
		t.Errorf("requests without a session changed something: %+v %+v %+v", h.sources, h.dead.replayed, h.routes.enabled)
	}
	// the login page and the assets need no session
	if resp, _ := h.do(t, "GET", "/console/login", nil, nil); resp.StatusCode != 200 {
		t.Errorf("GET /console/login: %d", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/console/assets/vendor/htmx/htmx.min.js", nil, nil); resp.StatusCode != 200 {
		t.Errorf("GET htmx.min.js: %d", resp.StatusCode)
	}
}

func TestLogin(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		token  string
		hdr    map[string]string
		status int
		msg    string
	}{
		{"wrong token", "nope", nil, 401, "Wrong token."},
		{"empty token", "", nil, 401, "Enter the admin token."},
		{"another site", adminTok, map[string]string{"Origin": "https://evil.example"}, 403, "another site"},
		{"cross-site fetch", adminTok, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "another site"},
	} {
		resp, body := h.do(t, "POST", "/console/login", url.Values{"token": {tc.token}}, tc.hdr)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.msg) || len(resp.Cookies()) != 0 {
			t.Errorf("login(%s) = %d, cookies %v; want %d with %q and no cookie", tc.name, resp.StatusCode, resp.Cookies(), tc.status, tc.msg)
		}
	}
	h.secrets.SetDown(true)
	if resp, _ := h.do(t, "POST", "/console/login", url.Values{"token": {adminTok}}, nil); resp.StatusCode != 503 {
		t.Errorf("login with the store down = %d; want 503", resp.StatusCode)
	}
	h.secrets.SetDown(false)

	resp, _ := h.do(t, "POST", "/console/login", url.Values{"token": {adminTok}, "next": {"/console/dead"}},
		map[string]string{"Origin": "http://console.test", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/console/dead" {
		t.Fatalf("login = %d %q; want 303 to next", resp.StatusCode, resp.Header.Get("Location"))
	}
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "max-age=3600", "path=/console/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q; want %s", sc, want)
		}
	}
	// next never leaves the console
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/admin/dead", "/console\\@evil"} {
		resp, _ := h.do(t, "POST", "/console/login", url.Values{"token": {adminTok}, "next": {next}}, nil)
		if loc := resp.Header.Get("Location"); loc != "/console/" {
			t.Errorf("login with next=%q redirects to %q; want /console/", next, loc)
		}
	}

	cookie, csrf := h.login(t)
	for _, p := range pages {
		resp, body := h.do(t, "GET", p, nil, map[string]string{"Cookie": cookie})
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d\n%s", p, resp.StatusCode, body)
		}
		if strings.Contains(body, srcSecret) || strings.Contains(body, adminTok) {
			t.Errorf("GET %s shows a secret value", p)
		}
	}
	// the session expires
	h.advance(59 * time.Minute)
	if resp, _ := h.do(t, "GET", "/console/", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 200 {
		t.Errorf("GET /console/ within the session: %d", resp.StatusCode)
	}
	h.advance(2 * time.Minute)
	if resp, _ := h.do(t, "GET", "/console/", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 303 {
		t.Errorf("GET /console/ after the session's expiry: %d; want 303", resp.StatusCode)
	}

	// a rotated admin token ends the old token's sessions
	cookie, _ = h.login(t)
	h.secrets.SetDown(true)
	if resp, _ := h.do(t, "GET", "/console/", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 200 {
		t.Errorf("GET /console/ with the store down: %d; want the session kept", resp.StatusCode)
	}
	h.secrets.SetDown(false)
	h.secrets.Set("admin/token", "rotated-admin-token-8c1v")
	if resp, _ := h.do(t, "GET", "/console/", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 303 {
		t.Errorf("GET /console/ after the admin token changed: %d; want 303", resp.StatusCode)
	}
	h.secrets.Set("admin/token", adminTok)

	// logout ends the session, the cookie is cleared
	cookie, csrf = h.login(t)
	resp, _ = h.do(t, "POST", "/console/logout", url.Values{"_csrf": {csrf}}, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 303 || !strings.Contains(resp.Header.Get("Set-Cookie"), "max-age=0") && !strings.Contains(resp.Header.Get("Set-Cookie"), "expires=") {
		t.Errorf("logout = %d %q; want 303 clearing the cookie", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	if resp, _ := h.do(t, "GET", "/console/", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 303 {
		t.Errorf("GET /console/ after logout: %d; want 303", resp.StatusCode)
	}
}

// TestLoginLimit: guessing the token is held to a few tries a second.
func TestLoginLimit(t *testing.T) {
	h := newHarness(t)
	h.con.logins = newLoginLimiter(loginPerAddr, loginPerAddrBurst, loginAll, loginAllBurst)
	limited := 0
	for i := 0; i < 20; i++ {
		resp, _ := h.do(t, "POST", "/console/login", url.Values{"token": {fmt.Sprintf("guess-%d", i)}}, nil)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		}
	}
	if limited < 5 {
		t.Errorf("%d of 20 quick login tries were limited; want most past the burst of 10", limited)
	}
}

func TestCrossSite(t *testing.T) {
	h := newHarness(t)
	cookie, csrf := h.login(t)
	del := "/console/sources/delete/ci"
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"_csrf": {csrf + "x"}}, nil},
		{"another session's token", url.Values{"_csrf": {"AAAA" + csrf[4:]}}, nil},
		{"another origin", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}},
		{"origin null", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "null"}},
		{"same host, other port", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "http://console.test:8443"}},
		{"cross-site fetch", url.Values{"_csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site fetch", url.Values{"_csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
	} {
		hdr := map[string]string{"Cookie": cookie}
		for k, v := range tc.hdr {
			hdr[k] = v
		}
		resp, _ := h.do(t, "POST", del, tc.form, hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with %s: %d; want 403", del, tc.name, resp.StatusCode)
		}
		for _, p := range []string{"/console/dead/replay", "/console/routes/enable/gone", "/console/sources"} {
			form := url.Values{"id": {"ev1/deal-sync"}, "provider": {"token"}, "secret": {"a/b"}}
			for k, v := range tc.form {
				form[k] = v
			}
			if resp, _ := h.do(t, "POST", p, form, hdr); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %s: %d; want 403", p, tc.name, resp.StatusCode)
			}
		}
	}
	if len(h.sources.dels)+len(h.sources.puts)+len(h.dead.replayed)+len(h.routes.enabled) != 0 {
		t.Fatalf("a refused request changed something")
	}
	// the header htmx sends, same origin: accepted
	resp, _ := h.do(t, "POST", del, url.Values{}, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf,
		"Origin": "http://console.test", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != 303 || len(h.sources.dels) != 1 {
		t.Errorf("POST %s with the session's token: %d, deleted %v; want 303 and the source deleted", del, resp.StatusCode, h.sources.dels)
	}
}

func TestSourceForm(t *testing.T) {
	h := newHarness(t)
	cookie, csrf := h.login(t)
	auth := map[string]string{"Cookie": cookie}
	post := func(form url.Values) (*http.Response, string) {
		form.Set("_csrf", csrf)
		return h.do(t, "POST", "/console/sources", form, auth)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		msg  string
	}{
		{"no id", url.Values{"provider": {"token"}, "secret": {"a/b"}}, "source.id: must be set"},
		{"bad size", url.Values{"id": {"x"}, "max_body_bytes": {"lots"}}, "max body bytes"},
		{"bad rate", url.Values{"id": {"x"}, "rate": {"fast"}}, "rate: want per_second/burst"},
		{"bad options", url.Values{"id": {"x"}, "options": {"novalue"}}, "options line 1"},
		{"exists", url.Values{"id": {"b24"}, "provider": {"token"}, "secret": {"a/b"}}, "exists already"},
	} {
		resp, body := post(tc.form)
		if resp.StatusCode/100 != 4 || !strings.Contains(body, tc.msg) {
			t.Errorf("POST source (%s) = %d; want 4xx with %q", tc.name, resp.StatusCode, tc.msg)
		}
	}
	// the admin API's validation message, its secret-bearing value scrubbed
	h.sources.err = hookgate.Errorf(hookgate.EBadRequest, "source.options.colour: unknown option")
	resp, body := post(url.Values{"id": {"new"}, "provider": {"token"}, "secret": {"a/b"}, "options": {"colour=blue"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "source.options.colour: unknown option") || !strings.Contains(body, "colour=blue") {
		t.Errorf("POST source refused by the admin API = %d; want 400 with its message and the form as typed:\n%s", resp.StatusCode, body)
	}
	h.sources.err = nil
	resp, _ = post(url.Values{"id": {"new"}, "provider": {"token"}, "secret": {"a/b"}, "event": {"e"}, "rate": {"5/10"}, "options": {"# c\nx = 1\n"}})
	if resp.StatusCode != 303 || len(h.sources.puts) != 1 {
		t.Fatalf("POST source = %d, puts %v; want 303 and one PutSource", resp.StatusCode, h.sources.puts)
	}
	if p := h.sources.puts[0]; p.Provider != "token" || p.Secret != "a/b" || p.Event != "e" || p.Rate == nil || p.Rate.Burst != 10 || p.Options["x"] != "1" {
		t.Errorf("PutSource got %+v", p)
	}
	// the page says what was saved, shows the URL to paste and the broken secret
	_, page := h.do(t, "GET", resp.Header.Get("Location"), nil, auth)
	for _, want := range []string{"Source new saved.", "http://console.test/webhook/ci?token={token}", "http://console.test/webhook/b24", "broken: secret not found: no secret", "readable"} {
		if !strings.Contains(page, want) {
			t.Errorf("sources page lacks %q", want)
		}
	}
	// a config-file source is read-only here
	if resp, _ := h.do(t, "GET", "/console/sources/edit/b24", nil, auth); resp.StatusCode != http.StatusConflict {
		t.Errorf("edit a config-file source: %d; want 409", resp.StatusCode)
	}
	h.sources.err = hookgate.Errorf(hookgate.ENotFound, `no runtime source "zz"`)
	if resp, body := h.do(t, "POST", "/console/sources/delete/zz", url.Values{"_csrf": {csrf}}, auth); resp.StatusCode != 404 || !strings.Contains(body, "no runtime source") {
		t.Errorf("delete an unknown source: %d; want 404 with the message", resp.StatusCode)
	}
}

func TestDeadAndRoutes(t *testing.T) {
	h := newHarness(t)
	cookie, csrf := h.login(t)
	auth := map[string]string{"Cookie": cookie}
	_, page := h.do(t, "GET", "/console/dead", nil, auth)
	if !strings.Contains(page, "ERROR_METHOD_NOT_FOUND") || strings.Contains(page, srcSecret) || !strings.Contains(page, "bad [redacted]") {
		t.Errorf("dead letters page: want the last errors, redacted:\n%s", page)
	}
	// the link of a row opens that job (ids hold a "/")
	link := regexp.MustCompile(`href="(/console/dead/job\?id=[^"]+)"`).FindStringSubmatch(page)
	if link == nil {
		t.Fatalf("no job link in the dead letters page")
	}
	if resp, body := h.do(t, "GET", strings.ReplaceAll(link[1], "&amp;", "&"), nil, auth); resp.StatusCode != 200 || !strings.Contains(body, `id="last-error"`) {
		t.Errorf("GET %s (the page's link) = %d; want the job's detail", link[1], resp.StatusCode)
	}
	_, page = h.do(t, "GET", "/console/dead/job?id=ev3%2Fdeal-sync", nil, auth)
	if strings.Contains(page, srcSecret) || !strings.Contains(page, "[redacted]") {
		t.Errorf("dead job page shows its payload's secret")
	}
	// one button, then a selection with one job replayed meanwhile
	resp, _ := h.do(t, "POST", "/console/dead/replay", url.Values{"_csrf": {csrf}, "one": {"ev1/deal-sync"}, "id": {"ev2/deal-sync"}}, auth)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/console/dead?replayed=1" || len(h.dead.replayed) != 1 {
		t.Errorf("replay one = %d %q, replayed %v; want only ev1", resp.StatusCode, resp.Header.Get("Location"), h.dead.replayed)
	}
	resp, body := h.do(t, "POST", "/console/dead/replay", url.Values{"_csrf": {csrf}, "id": {"ev1/deal-sync", "ev2/deal-sync", "ev3/deal-sync"}}, auth)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Replayed 2 job(s).") || !strings.Contains(body, "ev1/deal-sync: not dead any more") {
		t.Errorf("replay a selection = %d; want 409 naming the job not replayed:\n%s", resp.StatusCode, body)
	}
	if resp, _ := h.do(t, "POST", "/console/dead/replay", url.Values{"_csrf": {csrf}}, auth); resp.StatusCode != 400 {
		t.Errorf("replay nothing = %d; want 400", resp.StatusCode)
	}

	_, page = h.do(t, "GET", "/console/routes", nil, auth)
	if !strings.Contains(page, "disabled by 410") || !strings.Contains(page, `action="/console/routes/enable/gone"`) ||
		!strings.Contains(page, `<strong id="route-lag">7</strong>`) || !strings.Contains(page, `<td class="num">2</td><td>1m30s</td>`) {
		t.Errorf("routes page: want gone disabled with an enable button:\n%s", page)
	}
	if resp, _ := h.do(t, "POST", "/console/routes/enable/nope", url.Values{"_csrf": {csrf}}, auth); resp.StatusCode != 404 {
		t.Errorf("enable an unknown route = %d; want 404", resp.StatusCode)
	}
	resp, _ = h.do(t, "POST", "/console/routes/enable/gone", url.Values{"_csrf": {csrf}}, auth)
	if resp.StatusCode != 303 || len(h.routes.enabled) != 1 || h.routes.enabled[0] != "gone" {
		t.Errorf("enable gone = %d, enabled %v", resp.StatusCode, h.routes.enabled)
	}
}

func TestHistoryPages(t *testing.T) {
	h := newHarness(t)
	cookie, _ := h.login(t)
	auth := map[string]string{"Cookie": cookie}
	resp, page := h.do(t, "GET", "/console/history?source=b24&outcome=accepted&status=200&direction=inbound&from=2026-11-29T10:00&to=2026-11-29T11:00&event_id=ev1&page=3", nil, auth)
	if resp.StatusCode != 200 || len(h.hist.filters) != 1 {
		t.Fatalf("history search = %d", resp.StatusCode)
	}
	f := h.hist.filters[0]
	want := analytics.Filter{Source: "b24", Outcome: "accepted", Status: 200, Direction: hookgate.Inbound, EventID: "ev1",
		From: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC), Offset: 100, Limit: 51}
	if f != want {
		t.Errorf("filter = %+v; want %+v", f, want)
	}
	if !strings.Contains(page, "<!doctype html>") || !strings.Contains(page, "/console/history/trace/ev1") {
		t.Errorf("history page lacks the layout or the trace link")
	}
	// htmx asks for the results only
	_, frag := h.do(t, "GET", "/console/history?source=b24", nil, map[string]string{"Cookie": cookie, "HX-Request": "true", "HX-Target": "results"})
	if strings.Contains(frag, "<!doctype html>") || !strings.Contains(frag, `id="history-rows"`) {
		t.Errorf("htmx history fragment:\n%s", frag)
	}
	for _, bad := range []string{"status=abc", "direction=sideways", "from=yesterday", "from=2026-11-29T11:00&to=2026-11-29T10:00", "page=1000"} {
		if resp, _ := h.do(t, "GET", "/console/history?"+bad, nil, auth); resp.StatusCode != 400 {
			t.Errorf("history?%s = %d; want 400", bad, resp.StatusCode)
		}
	}
	_, page = h.do(t, "GET", "/console/history/exchange/11111111-2222-4333-8444-555555555555", nil, auth)
	if strings.Contains(page, srcSecret) || strings.Count(page, "[redacted]") < 2 {
		t.Errorf("exchange page: want headers and body redacted:\n%s", page)
	}
	if !strings.Contains(page, `<td class="mono" id="trace-id">4bf92f3577b34da6a3ce929d0e0e4736</td>`) {
		t.Errorf("exchange page lacks the row's trace id:\n%s", page)
	}
	if _, page := h.do(t, "GET", "/console/history/trace/ev1", nil, auth); !strings.Contains(page, `<span class="mono trace-id">4bf92f3577b34da6a3ce929d0e0e4736</span>`) {
		t.Errorf("trace page lacks the event's trace id:\n%s", page)
	}
	if resp, _ := h.do(t, "GET", "/console/history/exchange/nope", nil, auth); resp.StatusCode != 404 {
		t.Errorf("unknown exchange = %d; want 404", resp.StatusCode)
	}
	if resp, _ := h.do(t, "GET", "/console/history/trace/nope", nil, auth); resp.StatusCode != 404 {
		t.Errorf("unknown trace = %d; want 404", resp.StatusCode)
	}
	_, page = h.do(t, "GET", "/console/", nil, auth)
	for _, want := range []string{"invalid_token", "QUERY_LIMIT_EXCEEDED", `id="series"`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
}

func TestHub(t *testing.T) {
	h := newHub(func(s string) string { return strings.ReplaceAll(s, srcSecret, hookgate.Redacted) })
	ev := func(i int, src string) []byte {
		return []byte(fmt.Sprintf(`{"specversion":"1.0","id":"id-%d","source":"hookgate/%s","type":"t","time":"2026-11-29T12:00:00Z","data":{"event":"e","body":"%s"}}`, i, src, srcSecret))
	}
	a, err := h.subscribe("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := h.subscribe("other", "", 0)
	h.publish(ev(1, "ci"))
	h.publish([]byte("not json"))
	le := <-a.ch
	if le.Source != "ci" || le.ID != "id-1" || le.Seq != 1 || strings.Contains(le.JSON, srcSecret) || !strings.Contains(le.JSON, hookgate.Redacted) {
		t.Errorf("live event = %+v; want ci's event redacted", le)
	}
	if len(b.ch) != 0 {
		t.Errorf("a client filtering on another source got the event")
	}
	// a slow client loses events without holding anyone up, and is told
	for i := 2; i < 2+clientBuffer+10; i++ {
		h.publish(ev(i, "ci"))
	}
	if n := h.takeDropped(a); n != 10 {
		t.Errorf("dropped = %d; want 10", n)
	}
	// a reconnecting client gets what it missed after Last-Event-ID
	c, _ := h.subscribe("", "", uint64(clientBuffer+1+10-5))
	if len(c.ch) != 5 {
		t.Errorf("reconnect after seq %d got %d events; want the 5 after it", clientBuffer+6, len(c.ch))
	}
	for i := h.clients(); i < maxLiveClients; i++ {
		if _, err := h.subscribe("", "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.subscribe("", "", 0); !errors.Is(err, errTooManyClients) {
		t.Errorf("subscribe past the limit: %v; want errTooManyClients", err)
	}
	h.unsubscribe(a)
	h.close()
	if _, ok := <-b.ch; ok {
		t.Errorf("close left a stream open")
	}
}

// TestStream reads the SSE stream of a real server: an event published on
// the feed arrives, then the stream ends within StreamFor.
func TestStream(t *testing.T) {
	h := newHarness(t)
	var feed func([]byte)
	ready := make(chan struct{})
	h.con.cfg.Feed = func(fn func([]byte)) (func(), error) { feed = fn; close(ready); return func() {}, nil }
	h.con.cfg.StreamFor = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.con.Run(ctx)
	<-ready
	cookie, _ := h.login(t)
	ln := testenv.FreePort(t)
	go h.app.Listen(fmt.Sprintf("127.0.0.1:%d", ln))
	defer h.app.Shutdown()
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", ln), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/console/live/stream?source=ci", ln), nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	start := time.Now()
	for h.con.hub.clients() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	feed([]byte(`{"specversion":"1.0","id":"ev-9","source":"hookgate/ci","type":"t","time":"2026-11-29T12:00:00Z","data":{}}`))
	b, err := io.ReadAll(resp.Body) // ends when the stream does
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "retry: 1000") || !strings.Contains(string(b), `"id":"ev-9"`) || !strings.Contains(string(b), "id: 1\n") {
		t.Errorf("stream:\n%s", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stream lasted %v; want it to end after StreamFor (2s)", d)
	}
}

// TestAssets: the vendored files are the ones vendor/README.md pins, and
// the pages load nothing from elsewhere.
func TestAssets(t *testing.T) {
	readme, err := os.ReadFile("assets/vendor/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"htmx/htmx.min.js", "htmx/LICENSE", "uplot/uPlot.iife.min.js", "uplot/uPlot.min.css", "uplot/LICENSE"} {
		b, err := os.ReadFile(filepath.Join("assets/vendor", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "LICENSE") {
			continue
		}
		sum := sha256.Sum256(b)
		if !strings.Contains(string(readme), hex.EncodeToString(sum[:])) {
			t.Errorf("%s: checksum %x is not the one vendor/README.md pins", f, sum)
		}
	}
	tmpls, _ := filepath.Glob("templates/*.html")
	for _, p := range tmpls {
		b, _ := os.ReadFile(p)
		if regexp.MustCompile(`(src|href)="(https?:)?//`).Match(b) {
			t.Errorf("%s loads something from another site", p)
		}
		if regexp.MustCompile(`<script>|\son[a-z]+=`).Match(b) {
			t.Errorf("%s has an inline script or handler (the CSP forbids them)", p)
		}
	}
}

// TestNDJSONHistory: on the embedded default's NDJSON history (no
// ClickHouse) the history, exchange and trace pages read the files the
// history writer wrote.
func TestNDJSONHistory(t *testing.T) {
	dataDir := t.TempDir()
	ctx := context.Background()
	w, err := history.New(ctx, config.History{BatchRows: 10, FlushInterval: config.Duration(time.Second)}, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	in := hookgate.Exchange{TS: now.Add(-time.Minute), ExchangeID: hookgate.NewUUID(), EventID: hookgate.NewUUID(), Direction: hookgate.Inbound,
		Source: "files-src", Provider: "token", Event: "deal.changed", HTTPMethod: "POST", URL: "/webhook/files-src", Status: 200, Outcome: "accepted",
		Attempt: 1, RequestHeaders: `{"Content-Type":"application/json"}`, RequestBody: `{"deal":42}`}
	call := in
	call.TS, call.ExchangeID, call.Direction, call.Source, call.Event, call.Operation = now, hookgate.NewUUID(), hookgate.Outbound, "main", "", "crm.deal.get"
	other := in
	other.ExchangeID, other.EventID, other.Source = hookgate.NewUUID(), hookgate.NewUUID(), "elsewhere"
	for _, x := range []hookgate.Exchange{in, call, other} {
		w.Record(x)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	con, err := New(Config{Token: "admin/token", Secrets: h.secrets, Sources: h.sources,
		History: analytics.NewFiles(filepath.Join(dataDir, "history")), Logger: h.con.log})
	if err != nil {
		t.Fatal(err)
	}
	h.app = fiber.New(fiber.Config{DisableStartupMessage: true})
	con.Mount(h.app)
	cookie, _ := h.login(t)
	auth := map[string]string{"Cookie": cookie}
	_, page := h.do(t, "GET", "/console/history?source=files-src", nil, auth)
	if !strings.Contains(page, "/console/history/exchange/"+in.ExchangeID) || strings.Contains(page, other.ExchangeID) {
		t.Errorf("history?source=files-src: want files-src's row only:\n%s", page)
	}
	_, page = h.do(t, "GET", "/console/history/exchange/"+in.ExchangeID, nil, auth)
	if !strings.Contains(page, "&#34;deal&#34;: 42") {
		t.Errorf("exchange page lacks the indented body:\n%s", page)
	}
	_, page = h.do(t, "GET", "/console/history/trace/"+in.EventID, nil, auth)
	if !strings.Contains(page, "inbound deal.changed") || !strings.Contains(page, "crm.deal.get") {
		t.Errorf("trace page lacks the inbound row or the call:\n%s", page)
	}
	resp, page := h.do(t, "GET", "/console/", nil, auth)
	if resp.StatusCode != 200 || !strings.Contains(page, "files-src") {
		t.Errorf("overview on NDJSON history = %d; want files-src's counts", resp.StatusCode)
	}
}

// TestPanic: a handler that panics answers 500, logged without secrets,
// and the next request is served.
func TestPanic(t *testing.T) {
	h := newHarness(t)
	var logs strings.Builder
	h.con.log = slog.New(slog.NewTextHandler(&logs, nil))
	cookie, _ := h.login(t)
	h.sources.panic = true
	resp, body := h.do(t, "GET", "/console/sources", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 500 || strings.Contains(body, "sources broke") {
		t.Errorf("a panicking page = %d %q; want 500 without the panic's text", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "console: panic") || strings.Contains(logs.String(), srcSecret) {
		t.Errorf("log:\n%s\nwant the panic logged, redacted", logs.String())
	}
	h.sources.panic = false
	if resp, _ := h.do(t, "GET", "/console/sources", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 200 {
		t.Errorf("the next request = %d; want 200", resp.StatusCode)
	}
}
