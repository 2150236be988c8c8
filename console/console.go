// Package console is hookgate's web console at /console/: server-rendered
// pages (html/template, htmx for partial updates, server-sent events for
// the live view, uPlot for charts) over the admin API's operations and the
// history that package analytics reads. It logs in with the admin token
// and keeps a session in an HttpOnly, SameSite=Strict cookie; every change
// carries the session's CSRF token and a same-origin Origin.
//
// The JavaScript and CSS it needs are embedded (assets/, versions and
// licences in assets/vendor/README.md): the gateway needs no Node, no CDN
// and no build step.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/providers/credential"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console"

// cookieName is the session cookie.
const cookieName = "hookgate_console"

// SecretStore is what the console needs of the secret store: the admin
// token, a source secret's readability, and redaction of every value the
// store has served.
type SecretStore interface {
	Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error)
	Redact(text string) string
}

// Sources lists, creates and deletes sources with the admin API's
// validation; an *admin.API is one.
type Sources interface {
	Sources() []gateway.SourceInfo
	PutSource(ctx context.Context, id string, b admin.SourceBody) (gateway.SourceInfo, error)
	DeleteSource(ctx context.Context, id string) error
}

// DeadLetters lists and replays dead-lettered jobs; a *jobs.Queue is one.
type DeadLetters interface {
	Dead(ctx context.Context) ([]jobs.DeadJob, error)
	Replay(ctx context.Context, id string) error
}

// Config configures the console. Token, Secrets and Sources are required.
type Config struct {
	// Token is the admin token's secret reference (admin.token).
	Token   string
	Secrets SecretStore
	Sources Sources
	// Providers are the provider names the source form offers.
	Providers []string
	// BasePath is server.base_path, the prefix of the webhook URLs shown.
	BasePath string
	// History is read by the overview and the history pages; nil = those
	// parts say history cannot be read.
	History analytics.Browser
	Dead    DeadLetters  // nil = no dead-letter page
	Routes  admin.Routes // nil = no routes page
	// RouteLag returns the route engine's lag: events not yet turned into
	// jobs and, per route, the jobs waiting; nil = not shown.
	RouteLag func(ctx context.Context) (Lag, error)
	// Checks are the readiness checks shown on the overview (bus,
	// secrets, history).
	Checks map[string]gateway.Check
	// Metrics are read for breaker states, the spool, the pending and dead
	// job counts (metrics.Metrics.Registry); nil = not shown.
	Metrics prometheus.Gatherer
	// Feed streams the bus's inbound events to the live view; nil = the
	// live view stays empty.
	Feed Feed
	// SessionTTL is how long a login lasts; 0 = 12 h.
	SessionTTL time.Duration
	// StreamFor is how long one live stream stays open before the browser
	// reconnects; keep it under server.write_timeout. 0 = 9 s.
	StreamFor time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Lag is how far the routes are behind.
type Lag struct {
	// Events is the number of events the route engine has not yet turned
	// into jobs.
	Events uint64
	// Jobs are the stored jobs (waiting, running, waiting for a retry) by
	// route; Partial says only the oldest part of the queue was read.
	Jobs    map[string]RouteJobs
	Partial bool
}

// RouteJobs are the waiting jobs of one route.
type RouteJobs struct {
	Waiting int
	Oldest  time.Time // when the oldest was stored
}

// Console is the web console of one gateway.
type Console struct {
	cfg      Config
	sessions *sessions
	hub      *hub
	pages    map[string]*template.Template
	logins   *loginLimiter
	log      *slog.Logger
}

// New returns the console for c.
func New(c Config) (*Console, error) {
	if c.Token == "" || c.Secrets == nil || c.Sources == nil {
		return nil, errors.New("console: a Token reference, a secret store and Sources are required")
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.StreamFor <= 0 {
		c.StreamFor = 9 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Console{
		cfg:      c,
		sessions: newSessions(c.SessionTTL, c.Now),
		hub:      newHub(c.Secrets.Redact),
		pages:    pages,
		logins:   newLoginLimiter(loginPerAddr, loginPerAddrBurst, loginAll, loginAllBurst),
		log:      c.Logger,
	}, nil
}

// pageNames are the templates under templates/, each parsed with the
// layout.
var pageNames = []string{"login", "overview", "sources", "source_form", "live", "history", "exchange", "trace", "dead", "dead_job", "routes", "error"}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// Mount adds the console's routes to app (the gateway's, before it
// serves).
func (c *Console) Mount(app *fiber.App) {
	assets, _ := fs.Sub(assetFS, "assets")
	app.Use(Prefix+"/assets", filesystem.New(filesystem.Config{Root: http.FS(assets), MaxAge: 3600}))
	g := app.Group(Prefix, c.guard, c.headers)
	g.Get("/login", c.loginPage)
	g.Post("/login", c.login)
	g.Use(c.auth)
	g.Post("/logout", c.logout)
	g.Get("/", c.overview)
	g.Get("/sources", c.sourcesPage)
	g.Get("/sources/new", c.sourceForm)
	g.Get("/sources/edit/:id", c.sourceForm)
	g.Post("/sources", c.saveSource)
	g.Post("/sources/delete/:id", c.deleteSource)
	g.Get("/live", c.livePage)
	g.Get("/live/stream", c.stream)
	g.Get("/history", c.historyPage)
	g.Get("/history/exchange/:id", c.exchangePage)
	g.Get("/history/trace/:id", c.tracePage)
	g.Get("/dead", c.deadPage)
	g.Get("/dead/job", c.deadJobPage)
	g.Post("/dead/replay", c.replay)
	g.Get("/routes", c.routesPage)
	g.Post("/routes/enable/:name", c.enableRoute)
	g.All("/*", func(ctx *fiber.Ctx) error {
		return c.fail(ctx, fiber.StatusNotFound, "There is no such console page.")
	})
}

// guard turns a panic in a console handler into a logged 500: one page
// never takes the gateway down.
func (c *Console) guard(ctx *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("console: panic", "path", ctx.Path(), "panic", c.cfg.Secrets.Redact(fmt.Sprint(r)))
			ctx.Response().Reset()
			err = ctx.Status(fiber.StatusInternalServerError).SendString("console: internal error")
		}
	}()
	return ctx.Next()
}

// headers sets what every console answer carries: no caching, no
// framing, no referrer, scripts and styles from the console only.
func (c *Console) headers(ctx *fiber.Ctx) error {
	ctx.Set(fiber.HeaderCacheControl, "no-store")
	ctx.Set(fiber.HeaderXFrameOptions, "DENY")
	ctx.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	ctx.Set(fiber.HeaderReferrerPolicy, "same-origin") // "no-referrer" makes browsers send Origin: null
	ctx.Set(fiber.HeaderContentSecurityPolicy, "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	return ctx.Next()
}

// sessionKey is where auth leaves the session in the request's locals.
const sessionKey = "console.session"

// auth lets a request with a live session through. Without one a page
// (GET, not htmx) is redirected to the login page, anything else answers
// 401. A change (any method but GET and HEAD) must also come from the
// console's own origin and carry the session's CSRF token: 403 otherwise.
func (c *Console) auth(ctx *fiber.Ctx) error {
	cookie := ctx.Cookies(cookieName)
	sess := c.sessions.get(cookie)
	if sess != nil {
		// a rotated admin token ends the sessions of the old one; a store
		// that cannot answer keeps them (its cached values keep serving)
		if vals, err := c.cfg.Secrets.Secrets(ctx.UserContext(), c.cfg.Token); err == nil && !sess.tokenValid(vals) {
			c.sessions.end(cookie)
			sess = nil
		}
	}
	if sess == nil {
		if (ctx.Method() == fiber.MethodGet || ctx.Method() == fiber.MethodHead) && ctx.Get("HX-Request") == "" &&
			!strings.HasSuffix(ctx.Path(), "/stream") {
			return ctx.Redirect(Prefix+"/login?next="+url.QueryEscape(safeNext(string(ctx.Request().RequestURI()))), fiber.StatusSeeOther)
		}
		ctx.Set("HX-Redirect", Prefix+"/login")
		return c.fail(ctx, fiber.StatusUnauthorized, "Log in first: the session has ended or never began.")
	}
	if ctx.Method() != fiber.MethodGet && ctx.Method() != fiber.MethodHead {
		if !c.sameOrigin(ctx) {
			return c.fail(ctx, fiber.StatusForbidden, "Refused: the request came from another site.")
		}
		tok := ctx.Get("X-CSRF-Token")
		if tok == "" {
			tok = ctx.FormValue("_csrf")
		}
		if !sess.validCSRF(tok) {
			return c.fail(ctx, fiber.StatusForbidden, "Refused: the form is stale or did not come from the console. Reload the page and try again.")
		}
	}
	ctx.Locals(sessionKey, sess)
	return ctx.Next()
}

// sameOrigin reports whether a change comes from the console's origin:
// Sec-Fetch-Site, when the browser sends it, must be same-origin (or none:
// typed by the user); Origin, when sent, must be this host.
func (c *Console) sameOrigin(ctx *fiber.Ctx) bool {
	switch ctx.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := ctx.Get(fiber.HeaderOrigin)
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, ctx.Hostname())
}

// safeNext keeps a redirect target inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

func (c *Console) loginPage(ctx *fiber.Ctx) error {
	if c.sessions.get(ctx.Cookies(cookieName)) != nil {
		return ctx.Redirect(safeNext(ctx.Query("next")), fiber.StatusSeeOther)
	}
	return c.render(ctx, fiber.StatusOK, "login", view{Title: "Log in", Data: loginView{Next: safeNext(ctx.Query("next"))}})
}

type loginView struct {
	Next, Error string
}

// login checks the posted token against admin.token in constant time
// and starts a session.
func (c *Console) login(ctx *fiber.Ctx) error {
	next := safeNext(ctx.FormValue("next"))
	again := func(status int, msg string) error {
		return c.render(ctx, status, "login", view{Title: "Log in", Data: loginView{Next: next, Error: msg}})
	}
	if !c.sameOrigin(ctx) {
		return again(fiber.StatusForbidden, "Refused: the login form was posted from another site.")
	}
	if !c.logins.Allow(ctx.IP()) {
		ctx.Set(fiber.HeaderRetryAfter, "1")
		return again(fiber.StatusTooManyRequests, "Too many login attempts; wait a moment and try again.")
	}
	given := strings.TrimSpace(ctx.FormValue("token"))
	if given == "" {
		return again(fiber.StatusUnauthorized, "Enter the admin token.")
	}
	vals, err := c.cfg.Secrets.Secrets(ctx.UserContext(), c.cfg.Token)
	if err != nil {
		c.log.Warn("console login: admin token unavailable", "err", c.cfg.Secrets.Redact(err.Error()))
		ctx.Set(fiber.HeaderRetryAfter, "5")
		return again(fiber.StatusServiceUnavailable, "The admin token cannot be read from the secret store right now; try again shortly.")
	}
	if !credential.Match(given, vals) {
		c.log.Info("console login refused", "remote_addr", ctx.IP())
		return again(fiber.StatusUnauthorized, "Wrong token.")
	}
	id, _ := c.sessions.create(given)
	c.setCookie(ctx, id, c.cfg.SessionTTL)
	c.log.Info("console login", "remote_addr", ctx.IP())
	return ctx.Redirect(next, fiber.StatusSeeOther)
}

func (c *Console) setCookie(ctx *fiber.Ctx, value string, ttl time.Duration) {
	ck := &fiber.Cookie{
		Name: cookieName, Value: value, Path: Prefix + "/",
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
		Secure: ctx.Protocol() == "https",
	}
	if ttl > 0 {
		ck.MaxAge = int(ttl / time.Second)
		ck.Expires = c.cfg.Now().Add(ttl)
	} else {
		ck.MaxAge = -1
		ck.Expires = time.Unix(1, 0)
	}
	ctx.Cookie(ck)
}

func (c *Console) logout(ctx *fiber.Ctx) error {
	c.sessions.end(ctx.Cookies(cookieName))
	c.setCookie(ctx, "", 0)
	return ctx.Redirect(Prefix+"/login", fiber.StatusSeeOther)
}

// view is what every page template gets.
type view struct {
	Title string
	Nav   string // the current section
	CSRF  string
	Flash string
	Error string
	Data  any
}

// render executes a page (or, for an htmx request naming one with
// fragment, that fragment), redacts every value the secret store has
// served from the result, and sends it.
func (c *Console) render(ctx *fiber.Ctx, status int, page string, v view) error {
	return c.renderFragment(ctx, status, page, "layout.html", v)
}

func (c *Console) renderFragment(ctx *fiber.Ctx, status int, page, tmpl string, v view) error {
	if sess, ok := ctx.Locals(sessionKey).(*session); ok {
		v.CSRF = sess.csrf
	}
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, tmpl, v); err != nil {
		c.log.Error("console template", "page", page, "err", c.cfg.Secrets.Redact(err.Error()))
		return ctx.Status(fiber.StatusInternalServerError).SendString("console: the page could not be drawn")
	}
	ctx.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return ctx.Status(status).SendString(c.cfg.Secrets.Redact(buf.String()))
}

// fail answers with an error page (or, for htmx, the message alone).
func (c *Console) fail(ctx *fiber.Ctx, status int, msg string) error {
	if ctx.Get("HX-Request") != "" {
		return c.renderFragment(ctx, status, "error", "message", view{Error: msg})
	}
	return c.render(ctx, status, "error", view{Title: "Error", Error: msg})
}

// problem is the message of an error for a page: the caller-safe message
// of a hookgate error, else a generic one; secrets redacted either way.
func (c *Console) problem(err error, what string) string {
	var he *hookgate.Error
	if errors.As(err, &he) {
		if msg := hookgate.ErrorMessage(err); msg != "" {
			return c.cfg.Secrets.Redact(msg)
		}
	}
	c.log.Warn("console: "+what, "err", c.cfg.Secrets.Redact(err.Error()))
	return "Cannot " + what + " right now: " + c.cfg.Secrets.Redact(err.Error())
}

// opCtx bounds one page's reads and changes.
func opCtx(ctx *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx.UserContext(), 10*time.Second)
}
