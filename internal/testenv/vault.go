package testenv

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// VaultServer is a Vault dev server: KV v2 mounted at "secret/", unsealed,
// in memory.
type VaultServer struct {
	Addr  string // http://127.0.0.1:port
	Token string // root token
	// Process is the private server's process (StartVault); nil for the
	// shared one.
	Process *Process

	t testing.TB // of StartVault, for Start's failures
}

// Vault returns the shared dev server of the test environment
// (HOOKGATE_TEST_VAULT_ADDR, HOOKGATE_TEST_VAULT_TOKEN). Tests share it with
// other packages: use paths and mounts of their own.
func Vault(t testing.TB) *VaultServer {
	t.Helper()
	addr := Require(t, EnvVaultAddr, "a Vault dev server")
	token := Require(t, EnvVaultToken, "the Vault dev server's root token")
	return &VaultServer{Addr: addr, Token: token}
}

// StartVault starts a private dev server (binary from
// HOOKGATE_TEST_VAULT_BIN) on a free loopback port, for tests that stop and
// start it. A dev server loses its data when it stops: put secrets again
// after Start.
func StartVault(t testing.TB) *VaultServer {
	t.Helper()
	bin := Require(t, EnvVaultBin, "the vault binary")
	port := FreePort(t)
	token := "root-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	v := &VaultServer{Addr: "http://127.0.0.1:" + strconv.Itoa(port), Token: token, t: t}
	v.Process = StartProcess(t, bin, "server", "-dev",
		"-dev-root-token-id="+token,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-no-store-token")
	v.wait(t)
	return v
}

// Stop stops the private server.
func (v *VaultServer) Stop() {
	if v.Process != nil {
		v.Process.Stop()
	}
}

// Start starts the private server again and waits until it is ready; it
// fails the test that called StartVault when it cannot. The data is gone:
// put the secrets again.
func (v *VaultServer) Start() {
	if v.Process == nil {
		panic("testenv: the shared Vault cannot be started")
	}
	v.t.Helper()
	v.Process.Start()
	v.wait(v.t)
}

// wait waits until /v1/sys/health answers 200 (initialised, unsealed,
// active).
func (v *VaultServer) wait(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(v.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			log := ""
			if v.Process != nil {
				log = v.Process.Log()
			}
			t.Fatalf("vault at %s not ready after 60s (last: %v)\n%s", v.Addr, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns an API client with the root token.
func (v *VaultServer) Client(t testing.TB) *api.Client {
	t.Helper()
	conf := api.DefaultConfig()
	conf.Address = v.Addr
	conf.MaxRetries = 0
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatalf("vault client: %v", err)
	}
	c.SetToken(v.Token)
	return c
}

// Put writes a new version of the KV v2 secret at path under the "secret/"
// mount and returns its version number.
func (v *VaultServer) Put(t testing.TB, path string, data map[string]any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := v.Client(t).KVv2("secret").Put(ctx, path, data)
	if err != nil {
		t.Fatalf("vault put secret/%s: %v", path, err)
	}
	if s.VersionMetadata == nil {
		return 0
	}
	return s.VersionMetadata.Version
}

// Write writes data to any Vault path (sys/auth/..., auth/approle/role/...)
// and returns the answer's data.
func (v *VaultServer) Write(t testing.TB, path string, data map[string]any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := v.Client(t).Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	if s == nil {
		return nil
	}
	return s.Data
}

// String names the server in failure messages.
func (v *VaultServer) String() string { return fmt.Sprintf("vault %s", v.Addr) }
