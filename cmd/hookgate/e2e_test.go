package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// binPath is the hookgate binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookgate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "hookgate")
	// -race: the end-to-end, fault and two-instance tests run the real
	// binary; a data race in it fails them (the race detector exits 66
	// and the process helpers report it).
	out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build hookgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gatewayProc is a running `hookgate serve`.
type gatewayProc struct {
	*testenv.Process
	URL     string
	BusURL  string
	Config  string
	DataDir string
}

// writeConfig writes a config file into a fresh directory. Placeholders
// {{data}} and {{dir}} expand to the data dir and the config's directory.
func writeConfig(t *testing.T, yaml string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	yaml = strings.ReplaceAll(yaml, "{{dir}}", dir)
	yaml = strings.ReplaceAll(yaml, "{{data}}", filepath.Join(dir, "data"))
	path = filepath.Join(dir, "hookgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// startGateway runs hookgate serve on free ports with the config at path
// and waits for /healthz.
func startGateway(t *testing.T, path string, env ...string) *gatewayProc {
	t.Helper()
	return startGatewayBin(t, binPath, path, env...)
}

// startGatewayBin is startGateway with another hookgate binary.
func startGatewayBin(t *testing.T, bin, path string, env ...string) *gatewayProc {
	t.Helper()
	httpPort, busPort := testenv.FreePort(t), testenv.FreePort(t)
	g := &gatewayProc{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		BusURL: fmt.Sprintf("nats://127.0.0.1:%d", busPort),
		Config: path,
	}
	env = append(env,
		fmt.Sprintf("HOOKGATE_SERVER_LISTEN=127.0.0.1:%d", httpPort),
		fmt.Sprintf("HOOKGATE_BUS_LISTEN=127.0.0.1:%d", busPort))
	g.Process = testenv.StartProcessEnv(t, env, bin, "serve", "--config", path)
	// Runs before the process's own cleanup (LIFO): stop it, then read
	// its whole log for what the race detector wrote.
	t.Cleanup(func() {
		g.Stop()
		checkNoRace(t, filepath.Join(g.Process.Dir(), filepath.Base(bin)+".log"))
	})
	if err := waitHealthy(g.URL, 15*time.Second); err != nil {
		t.Fatalf("gateway not healthy: %v\n%s", err, g.Log())
	}
	cfg, err := config.Load(path, append(os.Environ(), env...))
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	g.DataDir = cfg.DataDir
	if !filepath.IsAbs(g.DataDir) {
		g.DataDir = filepath.Join(g.Process.Dir(), g.DataDir)
	}
	if cfg.Bus.URL == "" {
		// the embedded bus wants the token its gateway wrote
		if g.BusURL, err = events.TokenURL(strings.TrimPrefix(g.BusURL, "nats://"), g.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func waitHealthy(base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no /healthz after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNoRace fails the test when the log of a process built with -race
// holds a race report (the binary keeps running after one; only its exit
// status, which nobody reads after a SIGTERM, would say so).
func checkNoRace(t *testing.T, logPath string) {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Errorf("read the gateway's log: %v", err)
		return
	}
	if i := strings.Index(string(b), "WARNING: DATA RACE"); i >= 0 {
		t.Errorf("the race detector reported a data race in hookgate serve:\n%s", b[i:min(len(b), i+6000)])
	}
}

// post sends a webhook and decodes the JSON answer.
func post(t *testing.T, rawURL, ctype, body string, hdr map[string]string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest("POST", rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read the answer: %v", rawURL, err)
	}
	out := map[string]string{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: answer %q is not a JSON object", rawURL, b)
	}
	return resp.StatusCode, out
}

// busListen is the host:port of a nats:// URL, without credentials.
func busListen(u string) string {
	u = strings.TrimPrefix(u, "nats://")
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		u = u[i+1:]
	}
	return u
}

// tailer runs `hookgate tail` and collects the events it prints.
type tailer struct {
	cmd    *exec.Cmd
	events chan hookgate.Event
	raw    chan string
}

func startTail(t *testing.T, g *gatewayProc, env ...string) *tailer {
	t.Helper()
	cmd := exec.Command(binPath, "tail", "--config", g.Config)
	cmd.Env = append(os.Environ(), append(env, "HOOKGATE_BUS_LISTEN="+busListen(g.BusURL))...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tl := &tailer{cmd: cmd, events: make(chan hookgate.Event, 100), raw: make(chan string, 100)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "tailing ") {
				close(ready)
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			tl.raw <- line
			var ev hookgate.Event
			if json.Unmarshal([]byte(line), &ev) == nil {
				tl.events <- ev
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("hookgate tail did not start")
	}
	return tl
}

func (tl *tailer) next(t *testing.T, within time.Duration) hookgate.Event {
	t.Helper()
	select {
	case ev := <-tl.events:
		return ev
	case <-time.After(within):
		t.Fatalf("hookgate tail printed no event within %v", within)
	}
	return hookgate.Event{}
}

const formType = "application/x-www-form-urlencoded"

func bitrixForm(token, dealID, ts string) string {
	v := url.Values{}
	v.Set("event", "ONCRMDEALADD")
	v.Set("event_handler_id", "975")
	v.Set("data[FIELDS][ID]", dealID)
	v.Set("ts", ts)
	v.Set("auth[domain]", "some-domain.bitrix24.com")
	v.Set("auth[member_id]", "d897063e1ce7c5eb9f04b9751eef5915")
	v.Set("auth[application_token]", token)
	return v.Encode()
}

// TestSampleConfigHealthz: the README's first command answers /healthz
// within 2 s of starting.
func TestSampleConfigHealthz(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	httpPort, busPort := testenv.FreePort(t), testenv.FreePort(t)
	start := time.Now()
	p := testenv.StartProcessEnv(t, []string{
		fmt.Sprintf("HOOKGATE_SERVER_LISTEN=127.0.0.1:%d", httpPort),
		fmt.Sprintf("HOOKGATE_BUS_LISTEN=127.0.0.1:%d", busPort),
		"HOOKGATE_DATA_DIR=" + filepath.Join(dir, "data"),
		"HOOKGATE_SECRETS_FILE=" + filepath.Join(root, "examples/secrets.yaml"),
	}, binPath, "serve", "--config", filepath.Join(root, "examples/hookgate.yaml"))
	if err := waitHealthy(fmt.Sprintf("http://127.0.0.1:%d", httpPort), 2*time.Second); err != nil {
		t.Fatalf("%v (%v after start)\n%s", err, time.Since(start), p.Log())
	}
	t.Logf("/healthz answered %v after start", time.Since(start))
	status, body := post(t, fmt.Sprintf("http://127.0.0.1:%d/webhook/bitrix24-deals", httpPort), formType,
		bitrixForm("jvh9y1ulvt2m6k5or90v9mg8nn32ozas", "9", "1766047124"), nil)
	if status != 200 || body["status"] != "accepted" {
		t.Errorf("sample Bitrix24 POST: %d %v", status, body)
	}
}

// vaultConfig is a config on the real Vault of the test environment.
func vaultConfig(t *testing.T, v *testenv.VaultServer, extra string) string {
	path, _ := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets:
  backend: vault
  vault:
    address: %s
    token: %s
    cache_ttl: 300ms
    rotation_grace: 1h
log:
  level: debug
%s`, v.Addr, v.Token, extra))
	return path
}

// TestBitrix24OnVault covers issue 3's acceptance on a real Vault:
// accepted + tail, wrong token, duplicate, rotation, and no secret anywhere.
func TestBitrix24OnVault(t *testing.T) {
	v := testenv.Vault(t)
	ref := fmt.Sprintf("e2e/%d/deals", time.Now().UnixNano())
	const oldTok, newTok = "old-app-token-5k2m9x", "new-app-token-7q4w1z"
	v.Put(t, ref, map[string]any{"token": oldTok})
	cfg := vaultConfig(t, v, fmt.Sprintf(`
sources:
  - id: b24
    provider: bitrix24
    secret: %s
`, ref))
	g := startGateway(t, cfg)
	tl := startTail(t, g)
	hook := g.URL + "/webhook/b24"

	status, body := post(t, hook, formType, bitrixForm(oldTok, "9", "1766047124"), nil)
	if status != 200 || body["status"] != "accepted" || body["id"] == "" {
		t.Fatalf("right token: %d %v; want 200 accepted", status, body)
	}
	ev := tl.next(t, time.Second)
	if ev.ID != body["id"] || ev.Type != "ONCRMDEALADD" || ev.Data.Params["data[FIELDS][ID]"] != "9" {
		t.Errorf("tail event = %+v", ev)
	}
	if got := ev.Data.Params["auth[application_token]"]; got != hookgate.Redacted {
		t.Errorf("auth[application_token] in the event = %q; want redacted", got)
	}

	status, body2 := post(t, hook, formType, bitrixForm(oldTok, "9", "1766047124"), nil)
	if status != 200 || body2["status"] != "duplicate" || body2["id"] != body["id"] {
		t.Errorf("same POST again: %d %v; want 200 duplicate with id %s", status, body2, body["id"])
	}
	status, body3 := post(t, hook, formType, bitrixForm("wrong-token-000000", "10", "1766047125"), nil)
	if status != 401 || body3["error"] != "invalid_token" {
		t.Errorf("wrong token: %d %v; want 401 invalid_token", status, body3)
	}
	// Neither the duplicate nor the rejected call published: the next
	// event tail prints is a later accepted one (tail prints in stream
	// order), not a sleep that hopes nothing comes.
	status, later := post(t, hook, formType, bitrixForm(oldTok, "10", "1766047126"), nil)
	if status != 200 || later["status"] != "accepted" {
		t.Fatalf("a later call: %d %v; want 200 accepted", status, later)
	}
	if ev := tl.next(t, 5*time.Second); ev.ID != later["id"] {
		t.Errorf("tail printed event %s (%s, deal %s) before the later call's %s; want nothing from the duplicate or the rejected call",
			ev.ID, ev.Type, ev.Data.Params["data[FIELDS][ID]"], later["id"])
	}

	// rotation: the new token validates within cache_ttl, the old one
	// still inside rotation_grace
	v.Put(t, ref, map[string]any{"token": newTok})
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; ; i++ {
		status, _ = post(t, hook, formType, bitrixForm(newTok, "11", fmt.Sprint(1766047200+i)), nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new token still refused (%d) 3 s after the rotation", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, body := post(t, hook, formType, bitrixForm(oldTok, "12", "1766047300"), nil); status != 200 {
		t.Errorf("old token inside rotation_grace: %d %v; want 200", status, body)
	}

	// no secret value in the events, the log, or the history files
	g.Stop()
	tl.cmd.Process.Kill()
	var seen []string
	for len(tl.raw) > 0 {
		seen = append(seen, <-tl.raw)
	}
	// the whole log: g.Log() is only its last 4 KB
	logText, err := os.ReadFile(filepath.Join(g.Process.Dir(), filepath.Base(binPath)+".log"))
	if err != nil {
		t.Fatalf("the gateway's log: %v", err)
	}
	seen = append(seen, string(logText))
	hist, err := filepath.Glob(filepath.Join(filepath.Dir(cfg), "data/history/*.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range hist {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("history file: %v", err)
		}
		seen = append(seen, string(b))
	}
	if len(hist) == 0 {
		t.Errorf("no NDJSON history files were written")
	}
	for _, s := range seen {
		for _, secret := range []string{oldTok, newTok, v.Token, "wrong-token-000000"} {
			if strings.Contains(s, secret) {
				t.Errorf("a secret value appears in output: %.300q", s)
			}
		}
	}
}
