package main

import (
	"fmt"
	"io"
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
	// The replays wait for real time: they run in the background while the
	// package's other tests do (this file sorts first, and the test goes
	// parallel), and the test collects them at the end.
	type replay struct {
		after  time.Duration
		status int
		answer string
	}
	results := make(chan replay, 2)
	go func() {
		for _, after := range []time.Duration{130 * time.Second, 290 * time.Second} {
			time.Sleep(time.Until(sent.Add(after)))
			req, _ := http.NewRequest("POST", g.URL+"/webhook/billing", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("webhook-id", id)
			req.Header.Set("webhook-timestamp", fmt.Sprint(sent.Unix()))
			req.Header.Set("webhook-signature", sig)
			r := replay{after: after}
			if resp, err := http.DefaultClient.Do(req); err != nil {
				r.answer = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r.status, r.answer = resp.StatusCode, string(b)
			}
			results <- r
		}
	}()
	t.Parallel()
	for range 2 {
		r := <-results
		if r.status != 200 || !strings.Contains(r.answer, `"duplicate"`) {
			t.Errorf("the same request %v later = %d %s; want 200 duplicate", r.after, r.status, r.answer)
		}
	}
}
