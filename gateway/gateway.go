// Package gateway is hookgate's inbound HTTP side: the Fiber app, the
// webhook routes, health endpoints, and the one mapping from error codes to
// HTTP answers.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// SecretStore is what the gateway needs of the secret store.
type SecretStore interface {
	Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error)
	// Redact replaces every secret value the store has served.
	Redact(text string) string
}

// Publisher stores events durably; see events.Bus.Publish.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) (duplicate bool, err error)
}

// Observer receives one call per inbound request, for metrics.
type Observer func(source, provider, outcome string, d time.Duration)

// Check is a readiness check; nil means ready.
type Check func(ctx context.Context) error

// Deps are the gateway's collaborators. Registry, Secrets and Bus are
// required.
type Deps struct {
	Registry *Registry
	Secrets  SecretStore
	Bus      Publisher
	Recorder hookgate.Recorder // nil = no history
	Logger   *slog.Logger
	Now      func() time.Time
	Observe  Observer
	// Checks are the readiness checks by name (bus, secrets, history).
	Checks map[string]Check
	// HistoryBodyBytes truncates bodies in history rows; 0 = 64 KiB.
	HistoryBodyBytes int
	// PublishTimeout bounds the wait for JetStream's acknowledgement; 0 = 5 s.
	PublishTimeout time.Duration
}

// Gateway is the inbound HTTP server.
type Gateway struct {
	cfg      config.Server
	deps     Deps
	app      *fiber.App
	table    atomic.Pointer[sourceTable]
	fileSrcs []config.Source
	mu       sync.Mutex // serialises table rebuilds
	draining atomic.Bool
	log      *slog.Logger
	bodyMax  int64
}

// source is one configured source with its adapter.
type source struct {
	cfg       config.Source
	provider  Provider
	keyRouted bool
	runtime   bool
	limit     int64
	limiter   *rate.Limiter
}

type sourceTable struct {
	byID  map[string]*source
	byKey []*source // KeyRouted sources, matched by their secret
}

// New builds the gateway for the file-configured sources. It fails when a
// source's provider is unknown or rejects its settings.
func New(cfg config.Server, sources []config.Source, d Deps) (*Gateway, error) {
	if d.Registry == nil || d.Secrets == nil || d.Bus == nil {
		return nil, errors.New("gateway: Registry, Secrets and Bus are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.HistoryBodyBytes == 0 {
		d.HistoryBodyBytes = 64 << 10
	}
	if d.PublishTimeout == 0 {
		d.PublishTimeout = 5 * time.Second
	}
	g := &Gateway{cfg: cfg, deps: d, log: d.Logger, fileSrcs: sources}
	g.bodyMax = cfg.MaxBodyBytes
	for _, s := range sources {
		g.bodyMax = max(g.bodyMax, s.MaxBodyBytes)
	}
	if err := g.rebuild(nil); err != nil {
		return nil, err
	}
	g.app = g.newApp()
	return g, nil
}

// SetRuntimeSources replaces the sources created at runtime (admin API).
// They may not shadow file-configured ids.
func (g *Gateway) SetRuntimeSources(srcs []config.Source) error {
	return g.rebuild(srcs)
}

func (g *Gateway) rebuild(runtime []config.Source) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := &sourceTable{byID: map[string]*source{}}
	var errs []error
	add := func(c config.Source, isRuntime bool) {
		if _, dup := t.byID[c.ID]; dup {
			errs = append(errs, fmt.Errorf("source %q defined twice", c.ID))
			return
		}
		p, err := g.deps.Registry.New(c)
		if err != nil {
			errs = append(errs, err)
			return
		}
		s := &source{cfg: c, provider: p, runtime: isRuntime, limit: g.cfg.MaxBodyBytes}
		if c.MaxBodyBytes > 0 {
			s.limit = min(c.MaxBodyBytes, g.bodyMax)
		}
		if kr, ok := p.(KeyRouted); ok && kr.KeyRouted() {
			s.keyRouted = true
			t.byKey = append(t.byKey, s)
		}
		if c.Rate != nil {
			s.limiter = rate.NewLimiter(rate.Limit(c.Rate.PerSecond), c.Rate.Burst)
		}
		t.byID[c.ID] = s
	}
	for _, c := range g.fileSrcs {
		add(c, false)
	}
	for _, c := range runtime {
		add(c, true)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	g.table.Store(t)
	return nil
}

// Source returns a source's config and whether it was created at runtime.
func (g *Gateway) Source(id string) (config.Source, bool, bool) {
	s, ok := g.table.Load().byID[id]
	if !ok {
		return config.Source{}, false, false
	}
	return s.cfg, s.runtime, true
}

// Sources lists every source, file-configured first.
func (g *Gateway) Sources() []SourceInfo {
	t := g.table.Load()
	out := make([]SourceInfo, 0, len(t.byID))
	for _, c := range g.fileSrcs {
		out = append(out, SourceInfo{Source: t.byID[c.ID].cfg, Runtime: false})
	}
	for _, s := range t.byID {
		if s.runtime {
			out = append(out, SourceInfo{Source: s.cfg, Runtime: true})
		}
	}
	return out
}

// SourceInfo is a source as the admin API lists it.
type SourceInfo struct {
	config.Source
	Runtime bool `json:"runtime"`
}

// App returns the Fiber app (for tests and for mounting the admin API).
func (g *Gateway) App() *fiber.App { return g.app }

// Serve answers on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error { return g.app.Listener(ln) }

// SetDraining makes /readyz answer 503 (first step of a graceful shutdown).
func (g *Gateway) SetDraining() { g.draining.Store(true) }

// Shutdown stops accepting connections and waits for in-flight requests.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.SetDraining()
	return g.app.ShutdownWithContext(ctx)
}

func (g *Gateway) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:                 "hookgate",
		DisableStartupMessage:   true,
		BodyLimit:               int(g.bodyMax),
		ReadBufferSize:          max(g.cfg.MaxHeaderBytes, 4096),
		ReadTimeout:             g.cfg.ReadTimeout.D(),
		WriteTimeout:            g.cfg.WriteTimeout.D(),
		IdleTimeout:             g.cfg.IdleTimeout.D(),
		ErrorHandler:            g.errorHandler,
		EnableTrustedProxyCheck: len(g.cfg.TrustedProxies) > 0,
		TrustedProxies:          g.cfg.TrustedProxies,
		ProxyHeader:             proxyHeader(g.cfg.TrustedProxies),
		CaseSensitive:           true,
		StrictRouting:           false,
	})
	base := g.cfg.BasePath
	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/readyz", g.readyz)
	app.All(base+"/webhook/:source", g.handleSource)
	app.All(base+"/webhooks/:key", g.handleKey)
	return app
}

func proxyHeader(trusted []string) string {
	if len(trusted) == 0 {
		return ""
	}
	return fiber.HeaderXForwardedFor
}

func (g *Gateway) readyz(c *fiber.Ctx) error {
	if g.draining.Load() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "draining"})
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 3*time.Second)
	defer cancel()
	checks := fiber.Map{}
	ok := true
	for name, check := range g.deps.Checks {
		if err := check(ctx); err != nil {
			ok = false
			checks[name] = g.deps.Secrets.Redact(err.Error())
		} else {
			checks[name] = "ok"
		}
	}
	if !ok {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable", "checks": checks})
	}
	return c.JSON(fiber.Map{"status": "ready", "checks": checks})
}

// errorHandler answers errors Fiber raises before a handler runs (body over
// the limit while reading, unknown routes) in the same JSON shape.
func (g *Gateway) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	code := hookgate.EInternal
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			code = hookgate.EBodyTooLarge
		case fiber.StatusNotFound:
			code = hookgate.ENotFound
		case fiber.StatusMethodNotAllowed:
			code = hookgate.EMethodNotAllowed
		case fiber.StatusBadRequest:
			code = hookgate.EBadRequest
		case fiber.StatusRequestTimeout:
			code = hookgate.EBadRequest
		}
	} else {
		code = hookgate.ErrorCode(err)
	}
	herr := hookgate.WrapError(code, "", err)
	if in, ok := g.webhookPath(c.Path()); ok {
		// a webhook request refused before its handler ran (body over the
		// server limit while reading): answered and recorded like the others
		return g.finish(c, in, herr)
	}
	return writeError(c, herr)
}

// webhookPath recognises the webhook routes for requests Fiber refused
// before routing.
func (g *Gateway) webhookPath(path string) (*inbound, bool) {
	rest, ok := strings.CutPrefix(path, g.cfg.BasePath+"/webhook")
	if !ok {
		return nil, false
	}
	in := &inbound{start: time.Now()}
	switch {
	case strings.HasPrefix(rest, "/"):
		in.src = g.table.Load().byID[strings.TrimPrefix(rest, "/")]
	case strings.HasPrefix(rest, "s/"):
		in.keyRoute = true
	default:
		return nil, false
	}
	return in, true
}

// Status maps an error code to its HTTP status: the one place that does.
func Status(code string) int {
	switch code {
	case hookgate.EUnknownSource, hookgate.ENotFound:
		return fiber.StatusNotFound
	case hookgate.EInvalidToken, hookgate.EInvalidSignature, hookgate.EUnauthorized:
		return fiber.StatusUnauthorized
	case hookgate.EMethodNotAllowed:
		return fiber.StatusMethodNotAllowed
	case hookgate.EBodyTooLarge:
		return fiber.StatusRequestEntityTooLarge
	case hookgate.EUnsupportedMedia:
		return fiber.StatusUnsupportedMediaType
	case hookgate.EBadRequest:
		return fiber.StatusBadRequest
	case hookgate.EUnavailable:
		return fiber.StatusServiceUnavailable
	case hookgate.ERateLimited:
		return fiber.StatusTooManyRequests
	case hookgate.EConflict:
		return fiber.StatusConflict
	}
	return fiber.StatusInternalServerError
}

// writeError answers err as {"error":code[,"message":...]} with its status.
func writeError(c *fiber.Ctx, err error) error {
	code := hookgate.ErrorCode(err)
	status := Status(code)
	switch status {
	case fiber.StatusMethodNotAllowed:
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
	case fiber.StatusServiceUnavailable:
		c.Set(fiber.HeaderRetryAfter, "5")
	case fiber.StatusTooManyRequests:
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	body := fiber.Map{"error": code}
	if code == hookgate.EBadRequest {
		msg := hookgate.ErrorMessage(err)
		if msg == "" {
			msg = "bad request"
		}
		body["message"] = msg
	}
	return c.Status(status).JSON(body)
}
