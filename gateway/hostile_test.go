package gateway_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
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
