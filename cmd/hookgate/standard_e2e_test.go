package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/testenv"
)

// nodeSign signs payload with the npm standardwebhooks package.
func nodeSign(t *testing.T, secret, id string, ts int64, payload string) map[string]string {
	t.Helper()
	mods := testenv.Require(t, testenv.EnvNodePath, "node_modules with standardwebhooks (scripts/node)")
	cmd := exec.Command("node", filepath.Join(filepath.Dir(mods), "sign.js"), secret, id, strconv.FormatInt(ts, 10), payload)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sign.js: %v", err)
	}
	h := map[string]string{}
	if err := json.Unmarshal(out, &h); err != nil {
		t.Fatalf("sign.js printed %q", out)
	}
	return h
}

// TestStandardWebhooksIndependentSigner: a request signed by the npm
// standardwebhooks package is accepted; one byte changed in the signature
// or a timestamp 10 minutes old is refused with 401 invalid_signature.
func TestStandardWebhooksIndependentSigner(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
sources:
  - {id: billing, provider: standard, secret: billing/signing}
`)
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("billing/signing: {token: "+secret+"}\n"), 0o600)
	g := startGateway(t, path)
	hook := g.URL + "/webhook/billing"
	payload := `{"type":"invoice.paid","amount":10}`
	now := time.Now().Unix()

	h := nodeSign(t, secret, "msg_e2e_1", now, payload)
	if status, body := post(t, hook, "application/json", payload, h); status != 200 || body["status"] != "accepted" {
		t.Errorf("signed by standardwebhooks: %d %v; want 200 accepted", status, body)
	}

	h = nodeSign(t, secret, "msg_e2e_2", now, payload)
	sig := []byte(h["webhook-signature"])
	i := len(sig) - 5
	if sig[i] == 'A' {
		sig[i] = 'B'
	} else {
		sig[i] = 'A'
	}
	h["webhook-signature"] = string(sig)
	if status, body := post(t, hook, "application/json", payload, h); status != 401 || body["error"] != "invalid_signature" {
		t.Errorf("one byte changed: %d %v; want 401 invalid_signature", status, body)
	}

	h = nodeSign(t, secret, "msg_e2e_3", now-600, payload)
	if status, body := post(t, hook, "application/json", payload, h); status != 401 || body["error"] != "invalid_signature" {
		t.Errorf("timestamp 10 minutes old: %d %v; want 401 invalid_signature", status, body)
	}
}
