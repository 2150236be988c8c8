package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// hostileConfig is a file-secrets config with a Bitrix24 source, a GitHub
// source and the admin API on.
func hostileConfig(t *testing.T) string {
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
admin: {token: admin/token}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
  - {id: repo, provider: github, secret: gh/secret}
`)
	if err := os.WriteFile(dir+"/secrets.yaml", []byte("b24/token: {token: hostile-token-7q2w}\ngh/secret: {token: gh-hostile-9x8c}\nadmin/token: {token: admin-hostile-5t6y}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func githubRequest(t *testing.T, base, event, body string) *http.Request {
	t.Helper()
	m := hmac.New(sha256.New, []byte("gh-hostile-9x8c"))
	m.Write([]byte(body))
	req, err := http.NewRequest("POST", base+"/webhook/repo", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("d-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path[:min(len(req.URL.Path), 60)], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostileSubjectTokens: an over-long event name or source id, the
// three ways a probe found to stop the gateway, is answered and the
// gateway goes on serving (issue 14).
func TestHostileSubjectTokens(t *testing.T) {
	cfg := hostileConfig(t)
	g := startGateway(t, cfg)
	normal := func(step string) {
		t.Helper()
		deal := fmt.Sprintf("%d", time.Now().UnixNano())
		status, ans := post(t, g.URL+"/webhook/b24", formType, bitrixForm("hostile-token-7q2w", deal, deal), nil)
		if status != 200 {
			t.Fatalf("after %s: a normal request = %d %v; want 200\n%s", step, status, ans, g.Log())
		}
	}

	// 1. a Bitrix24 form with a 4 096-character event
	v, _ := url.ParseQuery(bitrixForm("hostile-token-7q2w", "1", "1"))
	long := strings.Repeat("E", 4096)
	v.Set("event", long)
	status, ans := post(t, g.URL+"/webhook/b24", formType, v.Encode(), nil)
	if status != 200 || ans["status"] != "accepted" {
		t.Errorf("bitrix24 form with a 4 096-character event = %d %v; want 200 accepted", status, ans)
	}
	normal("a 4 096-character Bitrix24 event")

	// 2. a validly signed GitHub delivery with a 4 100-character event header
	status, body := do(t, githubRequest(t, g.URL, strings.Repeat("push", 1025), `{"zen":"x"}`))
	if status != 200 {
		t.Errorf("github delivery with a 4 100-character X-GitHub-Event = %d %s; want 200", status, body)
	}
	normal("a 4 100-character GitHub event")

	// 3. an admin PUT of a source with a 4 100-character id
	req, _ := http.NewRequest("PUT", g.URL+"/admin/sources/"+strings.Repeat("s", 4100), strings.NewReader(`{"provider":"bitrix24","secret":"b24/token"}`))
	req.Header.Set("Authorization", "Bearer admin-hostile-5t6y")
	req.Header.Set("Content-Type", "application/json")
	status, body = do(t, req)
	if status != 400 || !strings.Contains(body, "bad_request") {
		t.Errorf("admin PUT of a 4 100-character source id = %d %s; want 400 bad_request", status, body)
	}
	normal("an admin PUT of a 4 100-character id")

	// and it starts again on the same data
	g.Stop()
	g.Start()
	if err := waitHealthy(g.URL, 15*time.Second); err != nil {
		t.Fatalf("gateway does not start again: %v\n%s", err, g.Log())
	}
	normal("a restart")
}

// TestBusTokenCLI: the embedded bus refuses a client without the token,
// and the CLI commands that use the bus still work beside a running
// gateway (issue 14).
func TestBusTokenCLI(t *testing.T) {
	cfg := hostileConfig(t)
	g := startGateway(t, cfg)
	if nc, err := nats.Connect("nats://"+busListen(g.BusURL), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a NATS client without the bus token connected to the embedded bus")
	}
	env := append(os.Environ(), "HOOKGATE_BUS_LISTEN="+busListen(g.BusURL))
	for _, args := range [][]string{{"dead", "list"}, {"routes", "disabled"}} {
		cmd := exec.Command(binPath, append([]string{args[0], "--config", cfg}, args[1:]...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("hookgate %s beside a running gateway = %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tl := startTail(t, g)
	deal := fmt.Sprint(time.Now().UnixNano())
	if status, ans := post(t, g.URL+"/webhook/b24", formType, bitrixForm("hostile-token-7q2w", deal, deal), nil); status != 200 {
		t.Fatalf("webhook = %d %v", status, ans)
	}
	if ev := tl.next(t, 10*time.Second); ev.Data.Params["data[FIELDS][ID]"] != deal {
		t.Errorf("tail printed deal %q; want %s", ev.Data.Params["data[FIELDS][ID]"], deal)
	}
}
