// Package deliverytest checks signed deliveries with an independent
// Standard Webhooks implementation (the npm standardwebhooks package), for
// the tests of delivery and of the packages that deliver (routes).
package deliverytest

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/internal/testenv"
)

//go:embed verify.js
var verifyJS []byte

// Verifier runs verify.js under node.
type Verifier struct {
	dir      string
	nodePath string
}

// NewVerifier returns a Verifier; the test fails (skips under -short)
// when HOOKGATE_TEST_NODE_PATH, the node_modules holding standardwebhooks,
// is not set.
func NewVerifier(t testing.TB) *Verifier {
	t.Helper()
	np := testenv.Require(t, testenv.EnvNodePath, "node_modules with the npm standardwebhooks package")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "verify.js"), verifyJS, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Verifier{dir: dir, nodePath: np}
}

// Verify reports whether standardwebhooks accepts body with the Standard
// Webhooks headers of h under secret (raw: the secret's bytes are the key,
// else a whsec_/base64 secret), and node's output.
func (v *Verifier) Verify(t testing.TB, secret string, raw bool, h http.Header, body []byte) (bool, string) {
	t.Helper()
	c := map[string]any{
		"secret": secret,
		"raw":    raw,
		"body":   string(body),
		"headers": map[string]string{
			"webhook-id":        h.Get("webhook-id"),
			"webhook-timestamp": h.Get("webhook-timestamp"),
			"webhook-signature": h.Get("webhook-signature"),
		},
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(v.dir, "capture-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command("node", filepath.Join(v.dir, "verify.js"), f.Name())
	cmd.Env = append(os.Environ(), "NODE_PATH="+v.nodePath)
	out, err := cmd.CombinedOutput()
	return err == nil, strings.TrimSpace(string(out))
}
