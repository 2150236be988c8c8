package vault_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/vault"
)

// These tests run against a real Vault dev server (testenv); they fail when
// the environment does not provide one.

func randomID(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// prefix returns a KV path prefix of the test's own on the shared server.
func prefix(t testing.TB) string {
	return "hookgate-test/" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + randomID(t)
}

func vaultConfig(v *testenv.VaultServer) config.Secrets {
	return config.Secrets{Backend: "vault", Vault: config.Vault{
		Address:       v.Addr,
		Mount:         "secret",
		Auth:          "token",
		Token:         v.Token,
		AppRole:       config.AppRole{Mount: "approle"},
		CacheTTL:      config.Duration(200 * time.Millisecond),
		RotationGrace: config.Duration(time.Hour),
		Timeout:       config.Duration(2 * time.Second),
	}}
}

func openStore(t *testing.T, cfg config.Secrets, opts ...vault.Option) *vault.Store {
	t.Helper()
	s, err := vault.New(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable clock for rotation grace and cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// noSecret fails when text holds any of the values.
func noSecret(t *testing.T, what, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s holds secret value %q: %s", what, v, text)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestVaultTokenAuth(t *testing.T) {
	v := testenv.Vault(t)
	p := prefix(t)
	v.Put(t, p+"/app", map[string]any{"token": "token-value-1", "api_key": "api-key-value-1", "port": 8080})
	values := []string{"token-value-1", "api-key-value-1", v.Token}

	var logs testenv.Buffer
	s := openStore(t, vaultConfig(v), vault.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	tests := []struct {
		ref      string
		want     []string
		wantCode string
	}{
		{ref: p + "/app", want: []string{"token-value-1"}},
		{ref: p + "/app#token", want: []string{"token-value-1"}},
		{ref: p + "/app#api_key", want: []string{"api-key-value-1"}},
		{ref: p + "/app#port", want: []string{"8080"}},
		{ref: p + "/app#missing", wantCode: hookgate.ENotFound},
		{ref: p + "/nothing", wantCode: hookgate.ENotFound},
		{ref: p + "/nothing#api_key", wantCode: hookgate.ENotFound},
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
		noSecret(t, "error of Secrets("+tc.ref+")", errText(err), values...)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check = %v; want nil", err)
	}

	got := s.Redact("url=/x?token=token-value-1&k=api-key-value-1")
	if want := "url=/x?token=[redacted]&k=[redacted]"; got != want {
		t.Errorf("Redact = %q; want %q", got, want)
	}
	noSecret(t, "log", logs.String(), values...)

	t.Run("VAULT_TOKEN", func(t *testing.T) {
		cfg := vaultConfig(v)
		cfg.Vault.Token = ""
		env := func(k string) string {
			if k == "VAULT_TOKEN" {
				return v.Token
			}
			return ""
		}
		s := openStore(t, cfg, vault.WithEnv(env))
		if got, err := s.Secret(context.Background(), p+"/app"); err != nil || got.Reveal() != "token-value-1" {
			t.Errorf("Secret = %q, %v; want token-value-1", got.Reveal(), err)
		}
	})

	t.Run("bad token", func(t *testing.T) {
		cfg := vaultConfig(v)
		cfg.Vault.Token = "hvs.not-a-token-" + randomID(t)
		s, err := vault.New(context.Background(), cfg)
		if err == nil {
			s.Close()
			t.Fatalf("New with a bad token = nil error")
		}
		noSecret(t, "New error", err.Error(), cfg.Vault.Token)
	})

	t.Run("no token", func(t *testing.T) {
		cfg := vaultConfig(v)
		cfg.Vault.Token = ""
		s, err := vault.New(context.Background(), cfg, vault.WithEnv(func(string) string { return "" }))
		if err == nil {
			s.Close()
			t.Fatalf("New without a token = nil error")
		}
	})
}

// approle enables AppRole at a mount of the test's own, with a role whose
// tokens read KV paths under p, and returns the config to log in with.
func approle(t *testing.T, v *testenv.VaultServer, p string, tokenTTL, tokenMaxTTL string) config.Secrets {
	t.Helper()
	mount := "approle-" + randomID(t)
	v.Write(t, "sys/auth/"+mount, map[string]any{"type": "approle"})
	policy := "hookgate-" + randomID(t)
	v.Write(t, "sys/policies/acl/"+policy, map[string]any{"policy": `
path "secret/data/` + p + `/*" { capabilities = ["read"] }
path "secret/metadata/` + p + `/*" { capabilities = ["read"] }
`})
	role := "gateway"
	v.Write(t, "auth/"+mount+"/role/"+role, map[string]any{
		"token_policies": policy,
		"token_ttl":      tokenTTL,
		"token_max_ttl":  tokenMaxTTL,
	})
	rid, err := v.Client(t).Logical().Read("auth/" + mount + "/role/" + role + "/role-id")
	if err != nil || rid == nil {
		t.Fatalf("read role-id: %v", err)
	}
	sid := v.Write(t, "auth/"+mount+"/role/"+role+"/secret-id", nil)
	file := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(file, []byte(sid["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := vaultConfig(v)
	cfg.Vault.Auth = "approle"
	cfg.Vault.Token = ""
	cfg.Vault.AppRole = config.AppRole{Mount: mount, RoleID: rid.Data["role_id"].(string), SecretIDFile: file}
	return cfg
}

func TestVaultAppRole(t *testing.T) {
	v := testenv.Vault(t)
	p := prefix(t)
	v.Put(t, p+"/one", map[string]any{"token": "approle-value-1", "field": "approle-field-1"})
	cfg := approle(t, v, p, "1h", "2h")
	secretID, err := os.ReadFile(cfg.Vault.AppRole.SecretIDFile)
	if err != nil {
		t.Fatal(err)
	}

	var logs testenv.Buffer
	s := openStore(t, cfg, vault.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, tc := range []struct{ ref, want string }{
		{p + "/one", "approle-value-1"},
		{p + "/one#field", "approle-field-1"},
	} {
		got, err := s.Secret(context.Background(), tc.ref)
		if err != nil || got.Reveal() != tc.want {
			t.Errorf("Secret(%q) = %q, %v; want %q", tc.ref, got.Reveal(), err, tc.want)
		}
	}
	// The policy allows nothing outside p.
	other := prefix(t)
	v.Put(t, other+"/x", map[string]any{"token": "forbidden-value"})
	_, err = s.Secret(context.Background(), other+"/x")
	if code := hookgate.ErrorCode(err); code != hookgate.EUnavailable {
		t.Errorf("Secret(outside policy) error = %v; want code %q", err, hookgate.EUnavailable)
	}
	noSecret(t, "error", errText(err), "forbidden-value", strings.TrimSpace(string(secretID)))
	t.Logf("outside policy: error: %v", err)
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check = %v; want nil", err)
	}

	t.Run("token revoked", func(t *testing.T) {
		// Revoke every token this AppRole mount handed out: the store's next
		// read is refused and it logs in again.
		v.Write(t, "sys/leases/revoke-prefix/auth/"+cfg.Vault.AppRole.Mount+"/login", nil)
		v.Put(t, p+"/two", map[string]any{"token": "approle-value-2"})
		got, err := s.Secret(context.Background(), p+"/two")
		if err != nil || got.Reveal() != "approle-value-2" {
			t.Errorf("Secret after revocation = %q, %v; want approle-value-2", got.Reveal(), err)
		}
		if !strings.Contains(logs.String(), "token refused, logging in again") {
			t.Errorf("no re-login logged after revocation; log:\n%s", logs.String())
		}
	})

	t.Run("bad secret id", func(t *testing.T) {
		bad := cfg
		file := filepath.Join(t.TempDir(), "secret-id")
		badID := "00000000-1111-2222-3333-" + randomID(t)
		if err := os.WriteFile(file, []byte(badID), 0o600); err != nil {
			t.Fatal(err)
		}
		bad.Vault.AppRole.SecretIDFile = file
		s, err := vault.New(context.Background(), bad)
		if err == nil {
			s.Close()
			t.Fatalf("New with a bad secret id = nil error")
		}
		noSecret(t, "New error", err.Error(), badID)
	})

	t.Run("missing secret id file", func(t *testing.T) {
		bad := cfg
		bad.Vault.AppRole.SecretIDFile = filepath.Join(t.TempDir(), "nope")
		if s, err := vault.New(context.Background(), bad); err == nil {
			s.Close()
			t.Fatalf("New with a missing secret id file = nil error")
		}
	})
	noSecret(t, "log", logs.String(), "approle-value-1", "approle-value-2", strings.TrimSpace(string(secretID)))
}

// TestVaultAppRoleRelogin gives the role tokens that live 2 s at most: the
// lifetime watcher renews them, and at their max TTL the store logs in
// again without the reads noticing.
func TestVaultAppRoleRelogin(t *testing.T) {
	v := testenv.Vault(t)
	p := prefix(t)
	v.Put(t, p+"/s", map[string]any{"token": "relogin-value"})
	cfg := approle(t, v, p, "1s", "2s")
	var logs testenv.Buffer
	s := openStore(t, cfg, vault.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(logs.String(), "logging in again") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second re-login within 15s; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 3 {
		v.Put(t, p+"/s", map[string]any{"token": "relogin-value"})
		if _, err := s.Secret(context.Background(), p+"/s"); err != nil {
			t.Fatalf("Secret after re-login (try %d): %v\nlog:\n%s", i, err, logs.String())
		}
		time.Sleep(250 * time.Millisecond) // past cache_ttl: the next read asks Vault
	}
}

func TestVaultRotation(t *testing.T) {
	v := testenv.Vault(t)
	p := prefix(t)
	clk := newClock()
	var observed []string
	var mu sync.Mutex
	observe := func(r string) { mu.Lock(); observed = append(observed, r); mu.Unlock() }
	last := func() string { mu.Lock(); defer mu.Unlock(); return observed[len(observed)-1] }
	s := openStore(t, vaultConfig(v), vault.WithClock(clk.Now), vault.WithObserver(observe))
	ctx := context.Background()
	ref := p + "/rotating"

	steps := []struct {
		name   string
		do     func()
		want   []string
		result string
	}{
		{name: "v1", do: func() { v.Put(t, ref, map[string]any{"token": "rot-value-1"}) }, want: []string{"rot-value-1"}, result: vault.ResultMiss},
		{name: "v2 written, cache fresh", do: func() { v.Put(t, ref, map[string]any{"token": "rot-value-2"}) }, want: []string{"rot-value-1"}, result: vault.ResultHit},
		{name: "after cache_ttl: v2 current, v1 in grace", do: func() { clk.Add(250 * time.Millisecond) }, want: []string{"rot-value-2", "rot-value-1"}, result: vault.ResultMiss},
		{name: "grace nearly over", do: func() { clk.Add(50 * time.Minute) }, want: []string{"rot-value-2", "rot-value-1"}, result: vault.ResultMiss},
		{name: "grace over", do: func() { clk.Add(11 * time.Minute) }, want: []string{"rot-value-2"}, result: vault.ResultMiss},
	}
	for _, st := range steps {
		st.do()
		got, err := s.Secrets(ctx, ref)
		if err != nil {
			t.Fatalf("%s: Secrets: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, reveal(got)); diff != "" {
			t.Errorf("%s: Secrets (-want +got):\n%s", st.name, diff)
		}
		if r := last(); r != st.result {
			t.Errorf("%s: observed %q; want %q", st.name, r, st.result)
		}
		cur, err := s.Secret(ctx, ref)
		if err != nil || cur.Reveal() != st.want[0] {
			t.Errorf("%s: Secret = %q, %v; want %q", st.name, cur.Reveal(), err, st.want[0])
		}
	}
	// Every value served is redacted, the previous ones included.
	if got := s.Redact("rot-value-1 rot-value-2"); got != "[redacted] [redacted]" {
		t.Errorf("Redact = %q", got)
	}

	t.Run("deleted and destroyed versions", func(t *testing.T) {
		clk := newClock() // Vault's created_time is real time
		s := openStore(t, vaultConfig(v), vault.WithClock(clk.Now))
		ref := p + "/versions"
		for i := 1; i <= 4; i++ {
			v.Put(t, ref, map[string]any{"token": "ver-value-" + string(rune('0'+i))})
		}
		kv := v.Client(t).KVv2("secret")
		if err := kv.DeleteVersions(ctx, ref, []int{3}); err != nil {
			t.Fatal(err)
		}
		if err := kv.Destroy(ctx, ref, []int{2}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Secrets(ctx, ref)
		if err != nil {
			t.Fatalf("Secrets: %v", err)
		}
		if diff := cmp.Diff([]string{"ver-value-4", "ver-value-1"}, reveal(got)); diff != "" {
			t.Errorf("Secrets (-want +got):\n%s", diff)
		}
		// Deleting the current version deletes the secret.
		if err := kv.Delete(ctx, ref); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		_, err = s.Secrets(ctx, ref)
		if code := hookgate.ErrorCode(err); code != hookgate.ENotFound {
			t.Errorf("Secrets after delete: %v; want code %q", err, hookgate.ENotFound)
		}
	})

	t.Run("no grace", func(t *testing.T) {
		cfg := vaultConfig(v)
		cfg.Vault.RotationGrace = 0
		s := openStore(t, cfg)
		ref := p + "/nograce"
		v.Put(t, ref, map[string]any{"token": "ng-value-1"})
		v.Put(t, ref, map[string]any{"token": "ng-value-2"})
		got, err := s.Secrets(ctx, ref)
		if err != nil {
			t.Fatalf("Secrets: %v", err)
		}
		if diff := cmp.Diff([]string{"ng-value-2"}, reveal(got)); diff != "" {
			t.Errorf("Secrets (-want +got):\n%s", diff)
		}
	})
}

// TestVaultDown stops a private Vault: cached values keep being served,
// values never read are unavailable, and nothing leaks into errors or logs.
func TestVaultDown(t *testing.T) {
	v := testenv.StartVault(t)
	clk := newClock()
	var logs testenv.Buffer
	var observed []string
	var mu sync.Mutex
	observe := func(r string) { mu.Lock(); observed = append(observed, r); mu.Unlock() }
	take := func() []string { mu.Lock(); defer mu.Unlock(); o := observed; observed = nil; return o }
	s := openStore(t, vaultConfig(v), vault.WithClock(clk.Now), vault.WithObserver(observe),
		vault.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx := context.Background()
	values := []string{"warm-value-1", "cold-value-1", "warm-value-2", v.Token}

	v.Put(t, "app/warm", map[string]any{"token": "warm-value-1"})
	v.Put(t, "app/cold", map[string]any{"token": "cold-value-1"})
	if got, err := s.Secret(ctx, "app/warm"); err != nil || got.Reveal() != "warm-value-1" {
		t.Fatalf("Secret(warm) = %q, %v", got.Reveal(), err)
	}
	take()

	v.Stop()
	clk.Add(time.Second) // past cache_ttl

	steps := []struct {
		name     string
		ref      string
		want     string
		wantCode string
		result   string
	}{
		{name: "warm, stale", ref: "app/warm", want: "warm-value-1", result: vault.ResultStale},
		{name: "warm again", ref: "app/warm#token", want: "warm-value-1", result: vault.ResultStale},
		{name: "cold", ref: "app/cold", wantCode: hookgate.EUnavailable, result: vault.ResultError},
	}
	for _, st := range steps {
		start := time.Now()
		got, err := s.Secret(ctx, st.ref)
		if code := hookgate.ErrorCode(err); code != st.wantCode {
			t.Errorf("%s: Secret(%q) error = %v; want code %q", st.name, st.ref, err, st.wantCode)
		}
		if got.Reveal() != st.want {
			t.Errorf("%s: Secret(%q) = %q; want %q", st.name, st.ref, got.Reveal(), st.want)
		}
		if diff := cmp.Diff([]string{st.result}, take()); diff != "" {
			t.Errorf("%s: observed (-want +got):\n%s", st.name, diff)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", st.name, d)
		}
		noSecret(t, st.name+" error", errText(err), values...)
		if err != nil {
			t.Logf("%s: error: %v", st.name, err)
		}
	}
	err := s.Check(ctx)
	if code := hookgate.ErrorCode(err); code != hookgate.EUnavailable {
		t.Errorf("Check while down = %v; want code %q", err, hookgate.EUnavailable)
	}
	noSecret(t, "Check error", errText(err), values...)
	// A store opened while Vault is down starts (so a gateway restarted
	// during an outage is up when Vault returns), and answers cold reads
	// with EUnavailable, never a value.
	s2, err := vault.New(ctx, vaultConfig(v))
	if err != nil {
		t.Fatalf("New while Vault is down = %v; want a store that waits for Vault", err)
	}
	defer s2.Close()
	if _, err := s2.Secret(ctx, "app/warm"); hookgate.ErrorCode(err) != hookgate.EUnavailable {
		t.Errorf("cold Secret on a store opened while Vault is down = %v; want code %q", err, hookgate.EUnavailable)
	} else {
		noSecret(t, "cold error", err.Error(), values...)
	}

	// Back up (empty: a dev server forgets), with a new value.
	v.Start()
	v.Put(t, "app/warm", map[string]any{"token": "warm-value-2"})
	clk.Add(10 * time.Second) // past the stale retry delay
	if got, err := s.Secret(ctx, "app/warm"); err != nil || got.Reveal() != "warm-value-2" {
		t.Errorf("Secret after restart = %q, %v; want warm-value-2", got.Reveal(), err)
	}
	if diff := cmp.Diff([]string{vault.ResultMiss}, take()); diff != "" {
		t.Errorf("after restart: observed (-want +got):\n%s", diff)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check after restart = %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := s2.Secret(ctx, "app/warm")
		if err == nil && got.Reveal() == "warm-value-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store opened while Vault was down: Secret after restart = %q, %v", got.Reveal(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	log := logs.String()
	if n := strings.Count(log, "serving cached secrets"); n != 1 {
		t.Errorf("stale warning logged %d times; want 1:\n%s", n, log)
	}
	noSecret(t, "log", log, values...)
}

// TestVaultConcurrent reads cold and warm paths from many goroutines (run
// with -race).
func TestVaultConcurrent(t *testing.T) {
	v := testenv.Vault(t)
	p := prefix(t)
	for i := range 4 {
		v.Put(t, p+"/c"+string(rune('0'+i)), map[string]any{"token": "conc-value-" + string(rune('0'+i))})
	}
	s := openStore(t, vaultConfig(v))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				i := (g + j) % 4
				got, err := s.Secret(context.Background(), p+"/c"+string(rune('0'+i)))
				if err == nil && got.Reveal() != "conc-value-"+string(rune('0'+i)) {
					err = &hookgate.Error{Code: hookgate.EInternal, Message: "wrong value for c" + string(rune('0'+i))}
				}
				if err != nil {
					errs <- err
					return
				}
				_ = s.Redact("x conc-value-1 y")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
