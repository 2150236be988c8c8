package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBin runs the hookgate binary in dir and returns its exit code and
// output.
func runBin(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("hookgate %v: %v", args, err)
	return 0, "", ""
}

// TestCheck: hookgate check reports one error of each kind at once, each
// with its key path, exits non-zero and creates no file (issue 16).
func TestCheck(t *testing.T) {
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
colour: blue
retry: {schedule: [1m, 90d]}
sources:
  - {id: ok, provider: token, secret: s/token}
  - {id: gone, provider: token, secret: no/such/secret}
  - {id: bad, provider: bitrix, secret: s/token}
  - {id: std, provider: standard, secret: s/token, options: {tolerance: soon}}
portals:
  - {id: main, base_url: "http://127.0.0.1:1", user_id: 1, secret: s/token}
routes:
  - name: r
    on: {source: ok}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "id" '}}
`)
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("s/token: {token: s3cret-check-value}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	code, stdout, stderr := runBin(t, dir, "check", "--config", path)
	if code == 0 {
		t.Fatalf("check of a bad config exited 0\n%s%s", stdout, stderr)
	}
	for _, want := range []string{
		"colour",                               // unknown key
		"retry.schedule: bad duration \"90d\"", // bad duration, with the units
		"a day is 24h",
		"sources[1].secret",            // missing secret
		"routes[0].call.params",        // bad template
		"sources[3].options.tolerance", // bad provider option
		"sources[2].provider: unknown provider \"bitrix\" (want one of", // unknown provider, with the names
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check output lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr+stdout, "s3cret-check-value") {
		t.Errorf("check printed a secret value:\n%s", stderr)
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Errorf("check created files: %d entries before, %d after", len(before), len(after))
	}

	// a good config: a one-line summary; --offline reads no secret
	good, gdir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
sources:
  - {id: ci, provider: token, secret: s/token}
`)
	os.WriteFile(filepath.Join(gdir, "secrets.yaml"), []byte("s/token: {token: s3cret-check-value}\n"), 0o600)
	code, stdout, stderr = runBin(t, gdir, "check", "--config", good)
	if code != 0 || !strings.Contains(stdout, "ok: 1 sources [ci (token)]") || !strings.Contains(stdout, "history: NDJSON") || !strings.Contains(stdout, "tracing: off") {
		t.Errorf("check of a good config = %d\n%s%s", code, stdout, stderr)
	}
	os.Remove(filepath.Join(gdir, "secrets.yaml"))
	if code, _, stderr = runBin(t, gdir, "check", good, "--offline"); code == 0 || !strings.Contains(stderr, "") {
		// a positional argument is not a config
		_ = stderr
	}
	code, stdout, stderr = runBin(t, gdir, "check", "--offline", "--config", good)
	if code != 0 || !strings.Contains(stdout, "--offline") {
		t.Errorf("check --offline without the secrets file = %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runBin(t, gdir, "check", "--config", good)
	if code == 0 || !strings.Contains(stderr, "secrets.file") {
		t.Errorf("check without the secrets file = %d; want a problem naming secrets.file\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(gdir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("check created data_dir: %v", err)
	}
}

// TestNoConfig: serve with no --config and no hookgate.yaml says so and
// points to the sample, creating nothing (issue 16).
func TestNoConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOOKGATE_CONFIG", "")
	code, _, stderr := runBin(t, dir, "serve")
	if code == 0 || !strings.Contains(stderr, "no config") || !strings.Contains(stderr, "examples/hookgate.yaml") {
		t.Errorf("serve without a config = %d %q; want a non-zero exit pointing to examples/hookgate.yaml", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("serve without a config left %d entries in its directory", len(entries))
	}
}

// TestBusPortTaken: serve fails within a second when bus.listen is taken,
// naming bus.listen (issue 16).
func TestBusPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
bus: {listen: "`+l.Addr().String()+`"}
server: {listen: "127.0.0.1:0"}
sources:
  - {id: ci, provider: token, secret: s/token}
`)
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("s/token: {token: s3cret-check-value}\n"), 0o600)
	start := time.Now()
	code, _, stderr := runBin(t, dir, "serve", "--config", path)
	took := time.Since(start)
	if code == 0 || !strings.Contains(stderr, "bus.listen") {
		t.Errorf("serve with bus.listen taken = %d %q; want an error naming bus.listen", code, stderr)
	}
	t.Logf("serve with bus.listen taken exited after %v", took)
	if took > 3*time.Second { // measured 67 ms; generous for a loaded CI machine: the point is not the 15 s wait of before
		t.Errorf("serve with bus.listen taken took %v; want it to fail at once", took)
	}
}

// TestHelpAndFlagOrder: every command's --help exits 0 with its
// description and flags; flags work after positional arguments (issue 16).
func TestHelpAndFlagOrder(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"serve", "check", "migrate", "call", "tail", "dead", "routes", "history"} {
		for _, flag := range []string{"--help", "-h"} {
			code, stdout, stderr := runBin(t, dir, cmd, flag)
			out := stdout + stderr
			if code != 0 || !strings.Contains(out, "usage: hookgate "+cmd) || !strings.Contains(out, "-config") {
				t.Errorf("hookgate %s %s = %d\n%s", cmd, flag, code, out)
			}
		}
		if code, out, _ := runBin(t, dir, "help", cmd); code != 0 || !strings.Contains(out, "usage: hookgate "+cmd) {
			t.Errorf("hookgate help %s = %d\n%s", cmd, code, out)
		}
	}
	if code, out, _ := runBin(t, dir, "help"); code != 0 || !strings.Contains(out, "commands:") {
		t.Errorf("hookgate help = %d\n%s", code, out)
	}
	// flags after the positional arguments
	cfg := hostileConfig(t)
	g := startGateway(t, cfg)
	env := "HOOKGATE_BUS_LISTEN=" + busListen(g.BusURL)
	for _, args := range [][]string{{"routes", "disabled", "--config", cfg}, {"dead", "list", "--config", cfg, "--json"}} {
		c := exec.Command(binPath, args...)
		c.Env = append(os.Environ(), env)
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("hookgate %s = %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestHelpBlockInDocs: the `hookgate help` block of docs/operations.md is
// what the binary prints.
func TestHelpBlockInDocs(t *testing.T) {
	code, out, _ := runBin(t, t.TempDir(), "help")
	if code != 0 {
		t.Fatalf("hookgate help = %d", code)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```\n$ hookgate help\n"+out+"```\n") {
		t.Errorf("docs/operations.md's help block differs from `hookgate help`:\n%s", out)
	}
	contract, err := os.ReadFile("../../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(contract), "```\n"+out+"```\n") {
		t.Errorf("docs/contract.md's command block differs from `hookgate help`:\n%s", out)
	}
}

// TestSecondSignalForcesStop: a second Ctrl-C during the graceful stop
// ends the process at once with status 130 (issue 16). The first one
// starts a stop that waits server.drain_delay (set long here).
func TestSecondSignalForcesStop(t *testing.T) {
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
server: {drain_delay: 30s, shutdown_timeout: 60s}
sources:
  - {id: ci, provider: token, secret: s/token}
`)
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("s/token: {token: s3cret-check-value}\n"), 0o600)
	g := startGateway(t, path)
	pid := g.Pid()
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the first signal is being handled: draining
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, err := g.Wait(10 * time.Second)
	if err != nil {
		t.Fatalf("after a second Ctrl-C: %v\n%s", err, g.Log())
	}
	if code != 130 {
		t.Errorf("exit status after a second Ctrl-C = %d; want 130\n%s", code, g.Log())
	}
	t.Logf("stopped %v after the second signal (the drain delay is 30 s)", time.Since(start).Round(time.Millisecond))
}
