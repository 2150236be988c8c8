package gateway_test

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers"
)

// panicProvider panics while parsing, with the source's secret in the
// panic value, when the body asks for it.
type panicProvider struct{ formProvider }

func (p panicProvider) Parse(r *providers.Request) (*providers.Message, error) {
	if strings.Contains(string(r.Body), "boom") {
		panic("parser bug near s3cret-token-a")
	}
	return p.formProvider.Parse(r)
}

// A handler that panics — a provider's parser, an admin route — answers
// 500 {"error":"internal"}, is logged without the secret and counted, and
// the gateway goes on serving the next request.
func TestHandlerPanicAnswered(t *testing.T) {
	bus := newBus(t)
	reg := providers.NewRegistry()
	reg.Register("panicky", func(config.Source) (providers.Provider, error) { return panicProvider{}, nil })
	sec := testenv.NewSecrets(map[string]string{"a/token": "s3cret-token-a"})
	rec := &recorder{}
	var logs testenv.Buffer
	var panics atomic.Int64
	gw, err := gateway.New(config.Default().Server, []config.Source{
		{ID: "a", Provider: "panicky", Secret: "a/token"},
	}, gateway.Deps{Registry: reg, Secrets: sec, Bus: bus, Recorder: rec,
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
		Panicked: func() { panics.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	gw.App().Get("/admin/boom", func(*fiber.Ctx) error { panic("admin bug") })
	f := &fixture{bus: bus, secrets: sec, rec: rec}
	f.srv = serveFiber(t, gw)

	for i := 0; i < 3; i++ {
		code, body, _ := f.post(t, "POST", "/webhook/a", form, "event=E&boom=1")
		if code != 500 || body["error"] != hookgate.EInternal {
			t.Fatalf("panicking parser: %d %v, want 500 internal", code, body)
		}
		code, body, _ = f.post(t, "GET", "/admin/boom", "", "")
		if code != 500 || body["error"] != hookgate.EInternal {
			t.Fatalf("panicking admin route: %d %v, want 500 internal", code, body)
		}
	}
	code, body, _ := f.post(t, "POST", "/webhook/a", form, "event=E&id=1&token=s3cret-token-a")
	if code != 200 {
		t.Fatalf("request after the panics: %d %v, want 200", code, body)
	}
	if got := panics.Load(); got != 6 {
		t.Errorf("Panicked called %d times, want 6", got)
	}
	rec.mu.Lock()
	internal := 0
	for _, x := range rec.rows {
		if x.Error == hookgate.EInternal {
			internal++
		}
	}
	rec.mu.Unlock()
	if internal != 3 {
		t.Errorf("%d history rows with error internal, want 3 (one per panicking webhook)", internal)
	}
	out := logs.String()
	if !strings.Contains(out, "request handler panicked") || !strings.Contains(out, "admin bug") {
		t.Errorf("the panics are not logged: %s", out)
	}
	if strings.Contains(out, "s3cret-token-a") {
		t.Errorf("the log holds the secret: %s", out)
	}
}
