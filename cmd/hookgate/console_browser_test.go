package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// envScreenshots names a directory for the browser test's screenshots;
// unset, they go to a temporary directory. docs/console.md shows the ones
// taken with HOOKGATE_CONSOLE_SCREENSHOTS=docs/console.
const envScreenshots = "HOOKGATE_CONSOLE_SCREENSHOTS"

// chromiumPath is Debian's chromium, which scripts/test.sh installs.
const chromiumPath = "/usr/bin/chromium"

// TestConsoleBrowser is issue 19's acceptance: Debian's chromium, driven
// by playwright-core (scripts/node/console-e2e.js), uses the console of a
// real `hookgate serve` with Vault secrets, ClickHouse history and the
// Bitrix24 simulator: login (wrong and right token), a runtime source
// created in the Sources page, its webhook in Live within 2 s and in
// History with its trace, a dead letter fixed and replayed from the page,
// a route disabled by a 410 and enabled again, cross-site POSTs refused,
// no secret in any page, fragment or stream it saw, and logout.
func TestConsoleBrowser(t *testing.T) {
	nodePath := testenv.Require(t, testenv.EnvNodePath, "node_modules with playwright-core")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found: %v", err)
	}
	if _, err := os.Stat(filepath.Join(nodePath, "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed under %s (scripts/test.sh installs scripts/node's packages): %v", nodePath, err)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Debian's chromium is not installed (scripts/test.sh runs apt-get install -y chromium): %v", err)
	}
	v := testenv.Vault(t)
	chAddr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, chAddr)

	const portalSecret = "portal-secret-console-4k8s"
	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", portalSecret))
	sim.SeedDeals(12)
	simSrv := sim.Start()
	defer simSrv.Close()
	const goneDeal = "7"
	plat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Data struct {
				Params map[string]string `json:"params"`
			} `json:"data"`
		}
		json.Unmarshal(body, &ev)
		if ev.Data.Params["data[FIELDS][ID]"] == goneDeal {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer plat.Close()
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fault":
			sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.get", Count: 1000, Status: http.StatusNotFound,
				Code: bitrix24test.CodeMethodNotFound, Description: "Method not found!"})
		case "/fix":
			sim.ClearFaults()
		default:
			http.NotFound(w, r)
		}
	}))
	defer control.Close()

	prefix := fmt.Sprintf("console/%d", time.Now().UnixNano())
	const adminTok, srcTok, signing = "admin-token-console-9w3e", "cons-src-token-2v7b", "whsec_Y29uc29sZS1zaWduaW5nLXNlY3JldC0xMjM0"
	v.Put(t, prefix+"/admin", map[string]any{"token": adminTok})
	v.Put(t, prefix+"/cons", map[string]any{"token": srcTok})
	v.Put(t, prefix+"/portal", map[string]any{"token": portalSecret})
	v.Put(t, prefix+"/platform", map[string]any{"token": signing})
	v.Put(t, prefix+"/b24", map[string]any{"token": "b24-app-token-console-5h1q"})
	cfg := vaultConfig(t, v, fmt.Sprintf(`
history:
  clickhouse: {addr: ["%s"], database: %s}
  flush_interval: 200ms
retry:
  schedule: [200ms, 400ms]
admin:
  token: %s/admin
sources:
  - {id: b24, provider: bitrix24, secret: %s/b24}
portals:
  - {id: main, base_url: "%s", user_id: 1, secret: %s/portal}
routes:
  - name: console-sync
    on: {source: "cons*", event: "*"}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "%s/hooks", secret: %s/platform, timeout: 2s}
`, chAddr, db, prefix, prefix, simSrv.URL, prefix, plat.URL, prefix))
	g := startGateway(t, cfg)

	// a runtime source whose secret is not in Vault: the page shows it broken
	req, _ := http.NewRequest(http.MethodPut, g.URL+"/admin/sources/ghost",
		strings.NewReader(fmt.Sprintf(`{"provider":"token","secret":"%s/missing"}`, prefix)))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT /admin/sources/ghost: %v %v", err, resp)
	}
	resp.Body.Close()

	shots := os.Getenv(envScreenshots)
	if shots == "" {
		shots = t.TempDir()
	} else if !filepath.IsAbs(shots) {
		shots = filepath.Join("..", "..", shots) // relative to the repository root
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	in := map[string]any{
		"base": g.URL, "token": adminTok, "control": control.URL, "shots": shots, "chromium": chromiumPath,
		"source":   map[string]string{"id": "cons", "ref": prefix + "/cons", "token": srcTok},
		"broken":   "ghost",
		"route":    "console-sync",
		"goneDeal": goneDeal,
		"secrets":  []string{adminTok, srcTok, portalSecret, signing, "b24-app-token-console-5h1q", v.Token},
	}
	b, _ := json.Marshal(in)
	inPath := filepath.Join(t.TempDir(), "console-e2e.json")
	if err := os.WriteFile(inPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join("..", "..", "scripts", "node", "console-e2e.js"), inPath)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("browser test (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("browser test failed: %v\ngateway log tail:\n%s", err, tail(g.Log(), 40))
	}
	m := regexp.MustCompile(`(?m)^RESULT (.*)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the browser test printed no RESULT line")
	}
	var res struct {
		Checks  int     `json:"checks"`
		LiveMS  float64 `json:"liveMS"`
		Scanned int     `json:"scanned"`
	}
	if err := json.Unmarshal(m[1], &res); err != nil {
		t.Fatal(err)
	}
	if res.Checks < 30 || res.Scanned < 20 || res.LiveMS <= 0 || res.LiveMS >= 2000 {
		t.Errorf("browser test result %+v; want every check run, the pages scanned, the live event within 2 s", res)
	}

	// every screenshot exists, and docs/console.md shows each of them
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "console.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range consoleScreenshots {
		if st, err := os.Stat(filepath.Join(shots, name+".png")); err != nil || st.Size() < 5000 {
			t.Errorf("screenshot %s.png: %v; want a picture of the page", name, err)
		}
		if !strings.Contains(string(doc), "](console/"+name+".png)") {
			t.Errorf("docs/console.md does not show console/%s.png", name)
		}
	}
	// the gateway's log holds no secret either
	for _, s := range []string{adminTok, srcTok, portalSecret, signing} {
		if strings.Contains(g.Log(), s) {
			t.Errorf("the gateway's log holds a secret value")
		}
	}
}

// consoleScreenshots are the pages the browser test photographs.
var consoleScreenshots = []string{"login", "overview", "sources", "live", "history", "trace", "exchange", "dead", "dead-job", "routes"}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestConsoleSwitch: the console is served beside the admin API, and
// admin.console: false (here HOOKGATE_ADMIN_CONSOLE) turns it off.
func TestConsoleSwitch(t *testing.T) {
	t.Parallel()
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
admin: {token: admin/token}
`)
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("admin/token: {token: admin-switch-tok-1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		env  []string
		want int
	}{
		{nil, http.StatusSeeOther},
		{[]string{"HOOKGATE_ADMIN_CONSOLE=false"}, http.StatusNotFound},
	} {
		g := startGateway(t, path, tc.env...)
		resp, err := noRedirect.Get(g.URL + "/console/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /console/ with %v = %d; want %d", tc.env, resp.StatusCode, tc.want)
		}
		g.Stop()
	}
}
