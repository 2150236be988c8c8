package vault_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/vault"
)

// writeFile writes the secrets file and moves its mtime forward, so that a
// rewrite within the file system's timestamp granularity is still seen.
func writeFile(t *testing.T, path, content string, age time.Duration) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(age)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func fileStore(t *testing.T, content string, opts ...vault.Option) (*vault.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.yaml")
	writeFile(t, path, content, -time.Hour)
	s, err := vault.New(context.Background(), config.Secrets{Backend: "file", File: path}, opts...)
	if err != nil {
		t.Fatalf("New(file): %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestFileLookups(t *testing.T) {
	s, _ := fileStore(t, `
bitrix24/deals-app-token:
  token: app-token-value
landing/api-key:
  token: "0123"
  key: landing-key-value
numbers:
  token: 01234
`)
	tests := []struct {
		ref      string
		want     []string
		wantCode string
	}{
		{ref: "bitrix24/deals-app-token", want: []string{"app-token-value"}},
		{ref: "bitrix24/deals-app-token#token", want: []string{"app-token-value"}},
		{ref: "landing/api-key#key", want: []string{"landing-key-value"}},
		{ref: "landing/api-key", want: []string{"0123"}},
		{ref: "numbers", want: []string{"01234"}}, // taken as written
		{ref: "landing/api-key#missing", wantCode: hookgate.ENotFound},
		{ref: "no/such/path", wantCode: hookgate.ENotFound},
		{ref: "", wantCode: hookgate.ENotFound},
	}
	for _, tc := range tests {
		got, err := s.Secrets(context.Background(), tc.ref)
		if code := hookgate.ErrorCode(err); code != tc.wantCode {
			t.Errorf("Secrets(%q) error = %v; want code %q", tc.ref, err, tc.wantCode)
			continue
		}
		if diff := cmp.Diff(tc.want, reveal(got)); diff != "" {
			t.Errorf("Secrets(%q) (-want +got):\n%s", tc.ref, diff)
		}
	}
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check = %v; want nil", err)
	}
}

func TestFileReload(t *testing.T) {
	var obs []string
	now := time.Now()
	s, path := fileStore(t, "app:\n  token: first-value\n", vault.WithObserver(func(r string) { obs = append(obs, r) }),
		vault.WithClock(func() time.Time { return now }))
	ctx := context.Background()

	steps := []struct {
		name     string
		content  string // written before the lookup, unless empty
		ref      string
		want     string
		wantCode string
		result   string
	}{
		{name: "initial", ref: "app", want: "first-value", result: vault.ResultMiss},
		{name: "rotated", content: "app:\n  token: second-value\nnew:\n  token: new-value\n", ref: "app", want: "second-value", result: vault.ResultMiss},
		{name: "path added", ref: "new", want: "new-value", result: vault.ResultMiss},
		{name: "broken file keeps cached values", content: "app: [oops: second-value\n", ref: "app", want: "second-value", result: vault.ResultStale},
		{name: "broken file, never read path", ref: "other", wantCode: hookgate.EUnavailable, result: vault.ResultError},
		{name: "fixed, path removed", content: "app:\n  token: third-value\n", ref: "new", wantCode: hookgate.ENotFound, result: vault.ResultError},
		{name: "fixed", ref: "app", want: "third-value", result: vault.ResultMiss},
	}
	for i, st := range steps {
		if st.content != "" {
			writeFile(t, path, st.content, time.Duration(i)*time.Minute)
		}
		obs = nil
		now = now.Add(2 * time.Second) // past the file store's 1 s cache
		got, err := s.Secret(ctx, st.ref)
		if code := hookgate.ErrorCode(err); code != st.wantCode {
			t.Fatalf("%s: Secret(%q) error = %v; want code %q", st.name, st.ref, err, st.wantCode)
		}
		if err != nil && strings.Contains(err.Error(), "second-value") {
			t.Errorf("%s: error %q holds a secret value", st.name, err)
		}
		if got.Reveal() != st.want {
			t.Errorf("%s: Secret(%q) = %q; want %q", st.name, st.ref, got.Reveal(), st.want)
		}
		if diff := cmp.Diff([]string{st.result}, obs); diff != "" {
			t.Errorf("%s: observer (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestFileNew(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "app:\n  token: [leaky-value, x]\n", 0)
	broken := filepath.Join(dir, "broken.yaml")
	writeFile(t, broken, "app: {token: \"leaky-value\n", 0)
	tests := []struct {
		name string
		cfg  config.Secrets
	}{
		{"missing file", config.Secrets{Backend: "file", File: filepath.Join(dir, "nope.yaml")}},
		{"no file", config.Secrets{Backend: "file"}},
		{"non-scalar value", config.Secrets{Backend: "file", File: bad}},
		{"broken yaml", config.Secrets{Backend: "file", File: broken}},
		{"unknown backend", config.Secrets{Backend: "consul"}},
	}
	for _, tc := range tests {
		s, err := vault.New(context.Background(), tc.cfg)
		if err == nil {
			s.Close()
			t.Errorf("New(%s) = nil error; want one", tc.name)
			continue
		}
		if strings.Contains(err.Error(), "leaky-value") {
			t.Errorf("New(%s) error %q holds the secret value", tc.name, err)
		}
	}
}

func TestFileRedact(t *testing.T) {
	s, _ := fileStore(t, "a:\n  token: \"p@ss word/1\"\nb:\n  token: unserved-value\n")
	if _, err := s.Secret(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"auth=p%40ss+word%2F1&x=1", "auth=[redacted]&x=1"},
		{`{"k":"p@ss word/1"}`, `{"k":"[redacted]"}`},
		{"unserved-value too", "[redacted] too"}, // every value of the file is a secret
	}
	for _, tc := range tests {
		if got := s.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// TestFeedsGateway checks that the store gives the gateway its Secrets
// function.
func TestFeedsGateway(t *testing.T) {
	s, _ := fileStore(t, "ci/token:\n  token: ci-token-value\n")
	var f providers.Secrets = s.Func("ci/token")
	got, err := f(context.Background())
	if err != nil || len(got) != 1 || got[0].Reveal() != "ci-token-value" {
		t.Errorf("Func(ci/token)() = %v, %v; want [ci-token-value]", reveal(got), err)
	}
}

func reveal(ss []hookgate.Secret) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Reveal()
	}
	return out
}
