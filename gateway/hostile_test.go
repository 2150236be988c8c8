package gateway_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
)

// FuzzInboundNames drives random event names and source ids through the
// whole inbound path (a runtime source, the provider, the envelope, the
// embedded bus): each request is answered, and a normal request after it
// is stored (issue 14: a 4 KiB event name once closed the bus connection
// and stopped the process).
func FuzzInboundNames(f *testing.F) {
	fx := newHardFixture(f, func(s *config.Server) { s.MaxBodyBytes = 64 << 10 }, nil, gateway.Deps{})
	f.Add("rt", "ONCRMDEALADD")
	f.Add("rt", strings.Repeat("E", 4096))
	f.Add(strings.Repeat("s", 4100), "x")
	f.Add("a.b", "with space\r\n")
	f.Add("rt", "a.b.*.>")
	f.Add("rt", "")
	client := &http.Client{}
	n := 0
	f.Fuzz(func(t *testing.T, source, event string) {
		n++
		src := config.Source{ID: source, Provider: "form", Secret: "a/token"}
		valid := len(config.ValidateSource("s", src, map[string]bool{"form": true})) == 0
		err := fx.gw.SetRuntimeSources([]config.Source{src})
		if valid && err != nil {
			t.Fatalf("SetRuntimeSources(%q) = %v; want nil for a valid id", source, err)
		}
		if !valid && err == nil && len(source) > config.MaxIDLength {
			t.Fatalf("SetRuntimeSources of a %d-byte id = nil; want it left out", len(source))
		}
		id := source
		if !valid {
			id = "a"
		}
		body := url.Values{"event": {event}, "token": {secretA}, "id": {"fuzz-" + strconv.Itoa(n)}}.Encode()
		status, answer, _ := postForm(t, client, fx.url+"/webhook/"+url.PathEscape(id), body, nil)
		switch {
		case event == "" && status == 400: // the form provider wants an event
		case status == 200:
		default:
			t.Fatalf("event %q to source %q = %d %s; want 200 (400 for no event)", trim(event), trim(id), status, answer)
		}
		status, answer, _ = postForm(t, client, fx.url+"/webhook/a", "event=E&token="+secretA+"&id=next-"+strconv.Itoa(n), nil)
		if status != 200 {
			t.Fatalf("after event %q to source %q: a normal request = %d %s; want 200", trim(event), trim(id), status, answer)
		}
	})
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// TestSecretMissing: a source whose secret the store does not have answers
// 401 without a credential and 503 with Retry-After with one (the sender
// keeps the event), logs one line for the source however many requests
// come, counts each, and serves again once the secret is there (issue 14).
func TestSecretMissing(t *testing.T) {
	var logs testenv.Buffer
	var missing atomic.Int64
	d := gateway.Deps{
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
		SecretMissing: func(string) { missing.Add(1) },
	}
	fx := newHardFixture(t, nil, []config.Source{
		{ID: "a", Provider: "form", Secret: "a/token"},
		{ID: "broken", Provider: "form", Secret: "not/written"},
		{ID: "keyed", Provider: "key", Secret: "not/written/either"},
	}, d)
	client := &http.Client{}
	if status, body, _ := postForm(t, client, fx.url+"/webhook/broken", "event=E", nil); status != 401 {
		t.Errorf("no credential = %d %s; want 401", status, body)
	}
	for i := range 3 {
		status, body, hdr := postForm(t, client, fx.url+"/webhook/broken", "event=E&token=t-"+strconv.Itoa(i), nil)
		if status != 503 || !strings.Contains(body, `"unavailable"`) || hdr.Get("Retry-After") == "" {
			t.Errorf("with a credential = %d %s (Retry-After %q); want 503 unavailable with Retry-After", status, body, hdr.Get("Retry-After"))
		}
	}
	if status, body, _ := postForm(t, client, fx.url+"/webhooks/some-api-key", "event=E", nil); status != 503 {
		t.Errorf("an API key while a key-routed source's secret is missing = %d %s; want 503", status, body)
	}
	if n := strings.Count(logs.String(), "source secret not found"); n != 2 {
		t.Errorf("%d log lines for the missing secrets; want one per source (2):\n%s", n, logs.String())
	}
	if got := missing.Load(); got != 4 {
		t.Errorf("SecretMissing called %d times; want 4", got)
	}
	if strings.Contains(logs.String(), "t-0") {
		t.Errorf("the log holds the credential sent:\n%s", logs.String())
	}
	fx.secrets.Set("not/written", "t-9")
	if status, body, _ := postForm(t, client, fx.url+"/webhook/broken", "event=E&token=t-9", nil); status != 200 {
		t.Errorf("once the secret is written = %d %s; want 200", status, body)
	}
	if !strings.Contains(logs.String(), "source secret found again") {
		t.Errorf("no log line when the secret came back:\n%s", logs.String())
	}
}
