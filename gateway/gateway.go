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
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
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
	Registry *providers.Registry
	Secrets  SecretStore
	Bus      Publisher
	Recorder hookgate.Recorder // nil = no history
	Logger   *slog.Logger
	Now      func() time.Time
	Observe  Observer
	// Checks are the readiness checks by name (bus, history): one failing
	// makes /readyz answer 503.
	Checks map[string]Check
	// Degraded are checks shown by /readyz that do not fail it (secrets:
	// cached values keep serving while the store is down).
	Degraded map[string]Check
	// PublishTimeout bounds the wait for JetStream's acknowledgement; 0 = 5 s.
	PublishTimeout time.Duration
	// Metrics is served at GET /metrics; nil = no /metrics route.
	Metrics http.Handler
	// Trim is called once a burst of large bodies is over, to hand the
	// memory they took back to the system (cmd sets debug.FreeOSMemory);
	// nil = never.
	Trim func()
	// SecretMissing is called for every request to a source whose secret
	// the store does not have (for a metric); nil = none.
	SecretMissing func(source string)
	// Panicked is called for every request whose handler panicked (it was
	// answered 500, logged, and the gateway went on); nil = none.
	Panicked func()
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
	fresh    fresh // accepted connections that have sent nothing yet
	log      *slog.Logger
	bodyMax  int64
	inflight *inflight      // server.max_inflight_bytes
	trusted  []netip.Prefix // server.trusted_proxies
}

// source is one configured source with its adapter.
type source struct {
	cfg       config.Source
	provider  providers.Provider
	keyRouted bool
	runtime   bool
	limit     int64
	limiter   *rate.Limiter
	// secretMissing is set while the store lacks the source's secret: the
	// first such request logs it, the next success logs its return.
	secretMissing atomic.Bool
}

type sourceTable struct {
	byID  map[string]*source
	byKey []*source // KeyRouted sources, matched by their secret
	// authParams holds every source's auth_parameter: a credential name
	// in any request, whichever source it was sent to.
	authParams map[string]bool
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
	if d.PublishTimeout == 0 {
		d.PublishTimeout = 5 * time.Second
	}
	g := &Gateway{cfg: cfg, deps: d, log: d.Logger, fileSrcs: sources}
	if g.cfg.MaxFormFields <= 0 {
		g.cfg.MaxFormFields = config.Default().Server.MaxFormFields
	}
	budget := cfg.MaxInflightBytes
	if budget <= 0 {
		budget = config.Default().Server.MaxInflightBytes
	}
	g.inflight = newInflight(budget, d.PublishTimeout, d.Trim)
	g.bodyMax = cfg.MaxBodyBytes
	for _, s := range sources {
		g.bodyMax = max(g.bodyMax, s.MaxBodyBytes)
	}
	trusted, err := parseTrusted(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	g.trusted = trusted
	g.mu.Lock()
	err = g.rebuild(nil)
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	g.app = g.newApp()
	return g, nil
}

// SetRuntimeSources replaces the sources created at runtime (admin API),
// keeping the rate-limit state of sources whose rate did not change. A
// runtime source that shadows a file-configured id, repeats an id or is
// refused by its provider is left out; the others take effect, and the
// error lists what was left out.
func (g *Gateway) SetRuntimeSources(srcs []config.Source) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rebuild(srcs)
}

// UpdateRuntimeSources rebuilds the table from the current runtime sources
// as changed by fn, under the rebuild lock (the admin API's change of one
// source, applied at once by the instance that took it). Errors are those
// of SetRuntimeSources.
func (g *Gateway) UpdateRuntimeSources(fn func([]config.Source) []config.Source) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var cur []config.Source
	for _, s := range g.table.Load().byID {
		if s.runtime {
			cur = append(cur, s.cfg)
		}
	}
	return g.rebuild(fn(cur))
}

// rebuild builds and stores the source table; g.mu must be held. A file
// source that fails is an error and nothing is stored (only New builds
// with file sources alone and fails); failing runtime sources are skipped.
func (g *Gateway) rebuild(runtime []config.Source) error {
	old := g.table.Load()
	t := &sourceTable{byID: map[string]*source{}, authParams: map[string]bool{}}
	var fileErrs, runErrs []error
	add := func(c config.Source, isRuntime bool) {
		errs := &fileErrs
		if isRuntime {
			errs = &runErrs
		}
		if len(c.ID) > config.MaxIDLength {
			*errs = append(*errs, fmt.Errorf("a source id of %d bytes (at most %d)", len(c.ID), config.MaxIDLength))
			return
		}
		if _, dup := t.byID[c.ID]; dup {
			*errs = append(*errs, fmt.Errorf("source %q defined twice", c.ID))
			return
		}
		p, err := g.deps.Registry.New(c)
		if err != nil {
			*errs = append(*errs, err)
			return
		}
		s := &source{cfg: c, provider: p, runtime: isRuntime, limit: g.cfg.MaxBodyBytes}
		if c.MaxBodyBytes > 0 {
			s.limit = min(c.MaxBodyBytes, g.bodyMax)
		}
		if kr, ok := p.(providers.KeyRouted); ok && kr.KeyRouted() {
			s.keyRouted = true
			t.byKey = append(t.byKey, s)
		}
		if c.Rate != nil {
			if prev := old.lookup(c.ID); prev != nil && prev.limiter != nil && *prev.cfg.Rate == *c.Rate {
				s.limiter = prev.limiter
			} else {
				s.limiter = rate.NewLimiter(rate.Limit(c.Rate.PerSecond), c.Rate.Burst)
			}
		}
		t.byID[c.ID] = s
		if c.AuthParameter != "" {
			t.authParams[c.AuthParameter] = true
		}
	}
	for _, c := range g.fileSrcs {
		add(c, false)
	}
	if err := errors.Join(fileErrs...); err != nil {
		return err
	}
	for _, c := range runtime {
		add(c, true)
	}
	g.table.Store(t)
	if err := errors.Join(runErrs...); err != nil {
		return fmt.Errorf("gateway: runtime sources left out: %w", err)
	}
	return nil
}

func (t *sourceTable) lookup(id string) *source {
	if t == nil {
		return nil
	}
	return t.byID[id]
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
	var runtime []SourceInfo
	for _, s := range t.byID {
		if s.runtime {
			runtime = append(runtime, SourceInfo{Source: s.cfg, Runtime: true})
		}
	}
	slices.SortFunc(runtime, func(a, b SourceInfo) int { return strings.Compare(a.ID, b.ID) })
	return append(out, runtime...)
}

// SourceInfo is a source as the admin API lists it.
type SourceInfo struct {
	config.Source
	Runtime bool `json:"runtime"`
}

// App returns the Fiber app (for tests and for mounting the admin API:
// admin.API.Mount, before Serve).
func (g *Gateway) App() *fiber.App { return g.app }

// Serve answers on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error { return g.app.Listener(g.fresh.listener(ln)) }

// SetDraining makes /readyz answer 503 (first step of a graceful shutdown).
func (g *Gateway) SetDraining() { g.draining.Store(true) }

// Shutdown stops accepting connections and waits for in-flight requests.
// Idle keep-alive connections are closed at once, connections that have
// not sent a byte after freshGrace too.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.SetDraining()
	stop := make(chan struct{})
	defer close(stop)
	go g.fresh.closeSilentUntil(stop, freshGrace)
	return g.app.ShutdownWithContext(ctx)
}

func (g *Gateway) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "hookgate",
		DisableStartupMessage: true,
		BodyLimit:             int(g.bodyMax),
		ReadBufferSize:        max(g.cfg.MaxHeaderBytes, 4096),
		ReadTimeout:           g.cfg.ReadTimeout.D(),
		WriteTimeout:          g.cfg.WriteTimeout.D(),
		IdleTimeout:           g.cfg.IdleTimeout.D(),
		ErrorHandler:          g.errorHandler,
		// the client address is set by clientAddr (X-Forwarded-For read
		// only from trusted proxies), so c.IP() is the connection's peer
		// as far as Fiber knows
		EnableTrustedProxyCheck: false,
		CaseSensitive:           true,
		// providers parse bodies themselves; fasthttp would parse every
		// multipart body once more before the handler runs
		DisablePreParseMultipartForm: true,
		StrictRouting:                false,
	})
	base := g.cfg.BasePath
	app.Use(func(c *fiber.Ctx) error {
		g.clientAddr(c)
		return c.Next()
	})
	app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	app.Get("/readyz", g.readyz)
	if g.deps.Metrics != nil {
		app.Get("/metrics", adaptor.HTTPHandler(g.deps.Metrics))
	}
	app.All(base+"/webhook/:source", g.handleSource)
	app.All(base+"/webhooks/:key", g.handleKey)
	srv := app.Server()
	srv.Handler = g.guard(srv.Handler)
	return app
}

func parseTrusted(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("gateway: trusted proxy %q is neither an IP nor a CIDR", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (g *Gateway) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr sets the request's remote address (what c.IP() returns) to
// the client's: the connection's peer, or, when the peer is a trusted
// proxy, the right-most X-Forwarded-For entry that is not itself a trusted
// proxy. Entries left of it are written by the client and not believed.
// fasthttp keeps a set address for the whole keep-alive connection, so it
// is reset first on every request.
func (g *Gateway) clientAddr(c *fiber.Ctx) {
	ctx := c.Context()
	ctx.SetRemoteAddr(nil)
	if len(g.trusted) == 0 {
		return
	}
	peer, ok := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if !ok || !g.isTrusted(peer) {
		return
	}
	var hops []string
	for _, v := range ctx.Request.Header.PeekAll(fiber.HeaderXForwardedFor) {
		for _, h := range strings.Split(string(v), ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // a malformed hop: believe nothing further left
		}
		client = a.Unmap()
		if !g.isTrusted(client) {
			break
		}
	}
	if client != peer {
		ctx.SetRemoteAddr(&net.TCPAddr{IP: client.AsSlice()})
	}
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
	status := "ready"
	for name, check := range g.deps.Degraded {
		if err := check(ctx); err != nil {
			status = "degraded"
			checks[name] = "degraded: " + g.deps.Secrets.Redact(err.Error())
		} else {
			checks[name] = "ok"
		}
	}
	if !ok {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable", "checks": checks})
	}
	return c.JSON(fiber.Map{"status": status, "checks": checks})
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
			// not a malformed request: one that did not arrive in time, so
			// a retryable answer (a 400 tells a sender not to try again)
			code = ERequestTimeout
		case fiber.StatusRequestHeaderFieldsTooLarge:
			code = EHeaderTooLarge
		}
	} else {
		code = hookgate.ErrorCode(err)
	}
	// the cause may quote the request (fasthttp's parse errors do): it
	// goes nowhere but the logs, redacted
	herr := hookgate.WrapError(code, "", err)
	g.clientAddr(c)
	switch code {
	case ERequestTimeout, EHeaderTooLarge:
		// fasthttp has dropped the request; its line, kept by the
		// connection, says which path it was for
		if in, ok := g.droppedRequest(c); ok {
			return g.finish(c, in, herr)
		}
		return writeError(c, herr)
	case hookgate.ENotFound:
		// no route: an empty source id or api key (/webhooks/), or a
		// webhook path with doubled slashes (//webhook/ci). Not
		// normalised (a proxy in front may have judged the path as
		// written), answered as the table answers a source not found.
		if in, ok := g.webhookPath(collapseSlashes(c.Path())); ok {
			in.src = nil
			herr = hookgate.Errorf(hookgate.EUnknownSource, "unknown source")
			if c.Method() != fiber.MethodPost {
				herr = hookgate.Errorf(hookgate.EMethodNotAllowed, "only POST")
			}
			return g.finish(c, in, herr)
		}
	}
	if in, ok := g.webhookPath(c.Path()); ok {
		// a webhook request refused before its handler ran (body over the
		// server limit while reading): answered and recorded like the others
		return g.finish(c, in, herr)
	}
	return writeError(c, herr)
}

// droppedRequest returns the webhook request whose line the connection
// kept, for a request fasthttp answered without keeping it.
func (g *Gateway) droppedRequest(c *fiber.Ctx) (*inbound, bool) {
	fc, ok := c.Context().Conn().(*freshConn)
	if !ok {
		return nil, false
	}
	method, target, ok := fc.requestLine()
	if !ok {
		return nil, false
	}
	path, _, _ := strings.Cut(target, "?") // the query may hold a credential
	in, ok := g.webhookPath(path)
	if !ok {
		return nil, false
	}
	in.method, in.path = method, path
	return in, true
}

// collapseSlashes replaces each run of slashes in path by one.
func collapseSlashes(path string) string {
	if !strings.Contains(path, "//") {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && i > 0 && path[i-1] == '/' {
			continue
		}
		b.WriteByte(path[i])
	}
	return b.String()
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
	case rest == "" || strings.HasPrefix(rest, "/"):
		in.src = g.table.Load().byID[strings.TrimPrefix(rest, "/")]
	case rest == "s" || strings.HasPrefix(rest, "s/"):
		in.keyRoute = true
	default:
		return nil, false
	}
	return in, true
}

// EHeaderTooLarge answers a request whose header is over
// server.max_header_bytes (431).
const EHeaderTooLarge = "header_too_large"

// ERequestTimeout answers a request not read whole within
// server.read_timeout (408). fasthttp also writes it to a connection that
// stayed silent that long.
const ERequestTimeout = "request_timeout"

// Status maps an error code to its HTTP status: the one place that does.
func Status(code string) int {
	switch code {
	case EHeaderTooLarge:
		return fiber.StatusRequestHeaderFieldsTooLarge
	case ERequestTimeout:
		return fiber.StatusRequestTimeout
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
