package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/standard"
)

// TestStandardReplayWindow: an identical Standard Webhooks request replayed
// inside the signature tolerance (5 minutes) is a duplicate, after 130 s
// and after 290 s: the de-duplication window follows the longest
// tolerance (issue 14; it was 2 minutes, so the 130 s replay was stored
// twice). It waits for real time, so it runs beside the other tests.
func TestStandardReplayWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits 290 s of real time")
	}
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
sources:
  - {id: billing, provider: standard, secret: billing/signing}
`)
	if err := os.WriteFile(dir+"/secrets.yaml", []byte("billing/signing: {token: "+secret+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, path)
	id := fmt.Sprintf("msg_replay_%d", time.Now().UnixNano())
	sent := time.Now()
	body := `{"type":"invoice.paid","amount":10}`
	sig, err := standard.Sign(hookgate.Secret(secret), id, sent, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	send := func() (int, string) {
		req, _ := http.NewRequest("POST", g.URL+"/webhook/billing", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", fmt.Sprint(sent.Unix()))
		req.Header.Set("webhook-signature", sig)
		return do(t, req)
	}
	status, first := send()
	if status != 200 || !strings.Contains(first, `"accepted"`) {
		t.Fatalf("first delivery = %d %s; want 200 accepted", status, first)
	}
	for _, after := range []time.Duration{130 * time.Second, 290 * time.Second} {
		time.Sleep(time.Until(sent.Add(after)))
		status, ans := send()
		if status != 200 || !strings.Contains(ans, `"duplicate"`) {
			t.Errorf("the same request %v later = %d %s; want 200 duplicate", after, status, ans)
		}
	}
}
