package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validateSecrets is the file store of the configs below.
const validateSecrets = `
s/token: {token: s3cret-token-value}
d/signing: {token: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
`

// serveFails runs hookgate serve on the config and returns its stderr; the
// start must fail, and leave nothing behind but the config and secrets.
func serveFails(t *testing.T, yaml string) string {
	t.Helper()
	path, dir := writeConfig(t, yaml)
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(validateSecrets), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "serve", "--config", path)
	cmd.Dir = dir // a relative path would land here
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("hookgate serve = %v; want a non-zero exit\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("hookgate serve still running after 20s; want it to refuse the config\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir after a failed start: %v; want it not created", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "hookgate.yaml" && e.Name() != "secrets.yaml" {
			t.Errorf("a failed start left %s behind", e.Name())
		}
	}
	return stderr.String()
}

// One config with an unknown key, a missing secret, a bad template and a
// bad provider option reports all four at once, with key paths, and
// creates no file or folder.
func TestServeReportsEveryProblemFirst(t *testing.T) {
	out := serveFails(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
server: {listen: "127.0.0.1:0", colour: red}
bus: {listen: "127.0.0.1:0"}
sources:
  - {id: plain, provider: token}
  - {id: billing, provider: standard, secret: s/token, options: {tolerance: soon}}
routes:
  - name: onward
    on: {source: billing, event: "*"}
    key: '{{ param "id"'
    deliver: {url: "http://127.0.0.1:9/hook", secret: d/signing}
`)
	for _, want := range []string{
		"server.colour: unknown key",
		"sources[0].secret: missing secret reference",
		"routes[0].key: template parse error",
		"sources[1].options.tolerance: want a duration",
		"config: 4 problem(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hookgate serve output lacks %q:\n%s", want, out)
		}
	}
}

// A secret reference the store does not hold is found before data_dir is
// created, and a provider option the provider does not take is reported
// at its key path.
func TestServeChecksSecretsFirst(t *testing.T) {
	out := serveFails(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
server: {listen: "127.0.0.1:0"}
bus: {listen: "127.0.0.1:0"}
sources:
  - {id: ci, provider: token, secret: nope/token}
`)
	if !strings.Contains(out, "sources[0].secret") {
		t.Errorf("hookgate serve output lacks sources[0].secret:\n%s", out)
	}
	out = serveFails(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
sources:
  - {id: ci, provider: token, secret: s/token, options: {tolerance: 5m}}
`)
	if !strings.Contains(out, "sources[0].options.tolerance: unknown option") {
		t.Errorf("hookgate serve output lacks sources[0].options.tolerance:\n%s", out)
	}
}
