// Package admin is hookgate's admin API under /admin (SPEC.md, "Inbound
// HTTP"): runtime sources, dead letters, disabled routes and Bitrix24 REST
// calls, behind a bearer token. It mounts on the gateway's Fiber app and
// maps the portal's errors to HTTP answers where it calls the portal, so
// that package gateway needs no outbound client.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/credential"
	"github.com/hookgate/hookgate/routes"
)

// Config configures the admin API.
type Config struct {
	// Token is the secret reference of the bearer token (admin.token). It
	// is read through the SecretStore on every request, so a rotation takes
	// effect as soon as the store serves the new value (the previous one
	// keeps working during its rotation grace).
	Token string
	// Sources persists runtime sources; required (see events.SourceStore).
	Sources SourceStore
	// Dead lists and replays dead-lettered jobs; nil = 404 on /admin/dead.
	Dead DeadLetters
	// Caller makes Bitrix24 REST calls; nil = 404 on /admin/call.
	Caller Caller
	// Routes lists and re-enables routes disabled by a 410 from the
	// platform; nil = 404 on /admin/routes.
	Routes Routes
}

// SecretStore is what the admin API needs of the secret store (the
// gateway's, so that it redacts the same values).
type SecretStore interface {
	Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error)
	// Redact replaces every secret value the store has served.
	Redact(text string) string
}

// SourceStore persists the sources created at runtime. Every instance
// watches it and applies changes with Gateway.SetRuntimeSources; the
// instance that took the admin request also applies its change at once.
type SourceStore interface {
	Put(ctx context.Context, src config.Source) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]config.Source, error)
}

// DeadLetters is what the admin API needs of the durable jobs; a
// *jobs.Queue is one. Replay of an unknown id returns an error matching
// jobs.ErrNotFound.
type DeadLetters interface {
	Dead(ctx context.Context) ([]jobs.DeadJob, error)
	Replay(ctx context.Context, id string) error
}

// Routes is what the admin API needs of the route engine; a
// *routes.Engine is one.
type Routes interface {
	// Routes lists the configured route names.
	Routes() []string
	// Disabled lists the disabled routes.
	Disabled(ctx context.Context) ([]routes.DisabledRoute, error)
	// Enable re-enables a configured route.
	Enable(ctx context.Context, name string) error
}

// Caller makes one Bitrix24 REST call on a configured portal. An unknown
// portal is an error with code hookgate.ENotFound; answers of the portal
// are *outbound.APIError values. Portals is the Caller over the portal
// clients.
type Caller interface {
	Call(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error)
}

// Portals is a Caller over the configured portals' clients, by portal id.
type Portals map[string]*outbound.Bitrix24

// Call implements Caller.
func (p Portals) Call(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error) {
	c, ok := p[portal]
	if !ok {
		return nil, hookgate.Errorf(hookgate.ENotFound, "unknown portal %q", portal)
	}
	res, err := c.Call(ctx, method, params)
	if err != nil {
		return nil, err
	}
	return res.Result, nil
}

// PagedCaller is a Caller that also returns the paging members of a list
// method's answer (next, total), which /admin/call passes on beside the
// result. Portals is one.
type PagedCaller interface {
	CallPaged(ctx context.Context, portal, method string, params map[string]any) (*outbound.Result, error)
}

// CallPaged implements PagedCaller.
func (p Portals) CallPaged(ctx context.Context, portal, method string, params map[string]any) (*outbound.Result, error) {
	c, ok := p[portal]
	if !ok {
		return nil, hookgate.Errorf(hookgate.ENotFound, "unknown portal %q", portal)
	}
	return c.Call(ctx, method, params)
}

// callAnswer is the body of a successful /admin/call: Bitrix24's envelope,
// result first.
type callAnswer struct {
	Result json.RawMessage `json:"result"`
	Next   *int            `json:"next,omitempty"`
	Total  *int            `json:"total,omitempty"`
}

// API is the admin API of one gateway.
type API struct {
	cfg      Config
	gw       *gateway.Gateway
	registry *providers.Registry
	secrets  SecretStore
	log      *slog.Logger
}

// Option configures an API.
type Option func(*API)

// WithLogger sets the logger of the per-request lines; default
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(a *API) {
		if l != nil {
			a.log = l
		}
	}
}

// New returns the admin API of gw: registry checks the sources it is given
// (the gateway's registry), secrets holds the token and redacts answers
// and logs (the gateway's store).
func New(gw *gateway.Gateway, registry *providers.Registry, secrets SecretStore, c Config, opts ...Option) (*API, error) {
	if gw == nil || registry == nil || secrets == nil {
		return nil, errors.New("admin: a gateway, a registry and a secret store are required")
	}
	if c.Token == "" || c.Sources == nil {
		return nil, errors.New("admin: a Token reference and a Sources store are required")
	}
	a := &API{cfg: c, gw: gw, registry: registry, secrets: secrets, log: slog.Default()}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// timeout bounds the store, dead-letter and call operations of one
// admin request.
const timeout = 30 * time.Second

// Mount adds the admin routes under /admin to app (the gateway's, before
// it serves).
func (a *API) Mount(app *fiber.App) {
	g := app.Group("/admin", a.logRequest, a.auth)
	g.Get("/sources", a.listSources)
	g.Put("/sources/:id", a.putSource)
	g.Delete("/sources/:id", a.deleteSource)
	g.Get("/dead", a.listDead)
	g.Post("/dead/:id/replay", a.replay)
	g.Post("/call/:portal/:method", a.call)
	g.Get("/routes/disabled", a.disabledRoutes)
	g.Post("/routes/:name/enable", a.enableRoute)
	g.All("/*", func(*fiber.Ctx) error {
		return hookgate.Errorf(hookgate.ENotFound, "no such admin endpoint")
	})
}

// logRequest records every admin request: method, path, status, remote
// address and duration. Never the Authorization header or a body.
func (a *API) logRequest(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		_ = writeError(c, err)
	}
	status := c.Response().StatusCode()
	attrs := []any{
		"method", c.Method(),
		"path", a.secrets.Redact(c.Path()),
		"status", status,
		"remote_addr", c.IP(),
		"duration", time.Since(start),
	}
	if err != nil {
		attrs = append(attrs, "code", hookgate.ErrorCode(err))
		if status >= 500 {
			attrs = append(attrs, "err", a.secrets.Redact(err.Error()))
		}
	}
	a.log.Info("admin request", attrs...)
	return nil
}

// writeError answers like the gateway's errors, with the caller-safe message of
// client errors (409, 404, 400) so that an operator sees what was wrong.
func writeError(c *fiber.Ctx, err error) error {
	code := hookgate.ErrorCode(err)
	status := gateway.Status(code)
	body := fiber.Map{"error": code}
	switch {
	case status == fiber.StatusServiceUnavailable:
		c.Set(fiber.HeaderRetryAfter, "5")
	case status == fiber.StatusUnauthorized:
	case status < 500:
		if msg := hookgate.ErrorMessage(err); msg != "" {
			body["message"] = msg
		}
	}
	return c.Status(status).JSON(body)
}

// auth checks the bearer token against admin.token in constant time
// (credential.Match, as the providers compare).
func (a *API) auth(c *fiber.Ctx) error {
	given, ok := bearer(c.Get(fiber.HeaderAuthorization))
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="hookgate-admin"`)
		return hookgate.Errorf(hookgate.EUnauthorized, "bearer token required")
	}
	vals, err := a.secrets.Secrets(c.UserContext(), a.cfg.Token)
	if err != nil {
		// not found or store down: the gateway cannot decide
		return hookgate.WrapError(hookgate.EUnavailable, "admin token unavailable", err)
	}
	if !credential.Match(given, vals) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="hookgate-admin", error="invalid_token"`)
		return hookgate.Errorf(hookgate.EUnauthorized, "wrong bearer token")
	}
	return c.Next()
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func opCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), timeout)
}

// publicSource is a source as the admin API shows it: the secret is a
// reference (a path), and any value the store has served is redacted in
// case one was put where a reference belongs.
func (a *API) publicSource(s gateway.SourceInfo) gateway.SourceInfo {
	r := a.secrets.Redact
	s.Secret = r(s.Secret)
	s.Event = r(s.Event)
	s.AuthParameter = r(s.AuthParameter)
	if len(s.Options) > 0 {
		opts := make(map[string]string, len(s.Options))
		for k, v := range s.Options {
			if hookgate.SensitiveName(k) {
				v = hookgate.Redacted // a value, not a reference
			}
			opts[k] = r(v)
		}
		s.Options = opts
	}
	return s
}

// sentSecrets lists the values a PUT body holds in secret-bearing fields:
// secret (a reference, but a caller may paste the value itself there) and
// the options whose name looks sensitive, longest first.
func sentSecrets(b SourceBody) []string {
	var vals []string
	if b.Secret != "" {
		vals = append(vals, b.Secret)
	}
	for k, v := range b.Options {
		if v != "" && hookgate.SensitiveName(k) {
			vals = append(vals, v)
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	return vals
}

// scrub removes the caller's secret-bearing values from a message, as
// written and as %q quotes them, and the values the store has served.
func (a *API) scrub(msg string, sent []string) string {
	for _, v := range sent {
		q := strconv.Quote(v)
		msg = strings.ReplaceAll(msg, q, `"`+hookgate.Redacted+`"`)
		msg = strings.ReplaceAll(msg, q[1:len(q)-1], hookgate.Redacted)
		msg = strings.ReplaceAll(msg, v, hookgate.Redacted)
	}
	return a.secrets.Redact(msg)
}

func (a *API) listSources(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"sources": a.Sources()})
}

// Sources lists every source as GET /admin/sources shows it: secrets are
// references, any served value and every sensitive option redacted.
func (a *API) Sources() []gateway.SourceInfo {
	list := a.gw.Sources()
	out := make([]gateway.SourceInfo, len(list))
	for i, s := range list {
		out[i] = a.publicSource(s)
	}
	return out
}

// SourceBody is the JSON body of PUT /admin/sources/{id}: the fields of a
// sources entry. The console's form fills the same fields.
type SourceBody struct {
	ID            string            `json:"id"`
	Provider      string            `json:"provider"`
	Secret        string            `json:"secret"`
	Event         string            `json:"event"`
	AuthParameter string            `json:"auth_parameter"`
	MaxBodyBytes  int64             `json:"max_body_bytes"`
	Rate          *config.Rate      `json:"rate"`
	Options       map[string]string `json:"options"`
}

// isFileSource reports whether id is a source of the config file (those
// are read-only here). A runtime source never shadows one.
func (a *API) isFileSource(id string) bool {
	_, runtime, ok := a.gw.Source(id)
	return ok && !runtime
}

// param returns a path parameter as a string of its own (Fiber's point
// into the connection's buffer, reused by the next request).
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

func (a *API) putSource(c *fiber.Ctx) error {
	id := param(c, "id")
	if a.isFileSource(id) {
		return hookgate.Errorf(hookgate.EConflict, "source %q is defined in the config file and is read-only", id)
	}
	var b SourceBody
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return hookgate.Errorf(hookgate.EBadRequest, "body: want a JSON source entry: %s", jsonProblem(err))
	}
	if dec.More() {
		return hookgate.Errorf(hookgate.EBadRequest, "body: one JSON object expected")
	}
	if b.ID != "" && b.ID != id {
		return hookgate.Errorf(hookgate.EBadRequest, "body id %q differs from the path's %q", b.ID, id)
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	out, err := a.PutSource(ctx, id, b)
	if err != nil {
		return err
	}
	return c.JSON(out)
}

// PutSource creates or replaces runtime source id with the fields of b,
// after the checks of config validation and of the source's provider: an
// error with code hookgate.EBadRequest lists every problem (no message
// repeats a secret-bearing value of b), EConflict names a source of the
// config file. It returns the source as the admin API shows it, its
// secret reference redacted.
func (a *API) PutSource(ctx context.Context, id string, b SourceBody) (gateway.SourceInfo, error) {
	if a.isFileSource(id) {
		return gateway.SourceInfo{}, hookgate.Errorf(hookgate.EConflict, "source %q is defined in the config file and is read-only", id)
	}
	src := config.Source{
		ID: id, Provider: b.Provider, Secret: b.Secret, Event: b.Event,
		AuthParameter: b.AuthParameter, MaxBodyBytes: b.MaxBodyBytes, Rate: b.Rate, Options: b.Options,
	}
	known := map[string]bool{}
	for _, n := range a.registry.Names() {
		known[n] = true
	}
	// no answer or message repeats a secret-bearing value the caller sent
	sent := sentSecrets(b)
	// the problems config validation reports, at the same paths under
	// "source" (source.options.tolerance)
	ps := config.ValidateSource("source", src, known)
	if len(ps) == 0 {
		_, cps := a.registry.Check(src)
		ps = cps.Under("source")
	}
	if len(ps) > 0 {
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = p.String()
		}
		return gateway.SourceInfo{}, hookgate.Errorf(hookgate.EBadRequest, "%s", a.scrub(strings.Join(msgs, "; "), sent))
	}
	if err := a.cfg.Sources.Put(ctx, src); err != nil {
		return gateway.SourceInfo{}, hookgate.WrapError(hookgate.EUnavailable, "cannot store the source", err)
	}
	err := a.gw.UpdateRuntimeSources(func(cur []config.Source) []config.Source {
		out := cur[:0]
		for _, s := range cur {
			if s.ID != id {
				out = append(out, s)
			}
		}
		return append(out, src)
	})
	if err != nil {
		a.log.Warn("runtime sources", "err", a.scrub(err.Error(), sent))
	}
	out := a.publicSource(gateway.SourceInfo{Source: src, Runtime: true})
	out.Secret = hookgate.Redacted // the caller has it; GET /admin/sources lists the reference
	return out, nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: want %s", te.Field, te.Type)
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	// unknown fields and EOF: the message names the field, not a value
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field") || msg == "EOF" || msg == "unexpected EOF" {
		return msg
	}
	return "malformed JSON"
}

func (a *API) deleteSource(c *fiber.Ctx) error {
	id := param(c, "id")
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := a.DeleteSource(ctx, id); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"status": "deleted", "id": id})
}

// DeleteSource deletes runtime source id: ENotFound when there is none,
// EConflict for a source of the config file.
func (a *API) DeleteSource(ctx context.Context, id string) error {
	if a.isFileSource(id) {
		return hookgate.Errorf(hookgate.EConflict, "source %q is defined in the config file and is read-only", id)
	}
	stored, err := a.cfg.Sources.List(ctx)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot read the runtime sources", err)
	}
	_, local, exists := a.gw.Source(id)
	found := exists && local
	for _, s := range stored {
		found = found || s.ID == id
	}
	if !found {
		return hookgate.Errorf(hookgate.ENotFound, "no runtime source %q", id)
	}
	if err := a.cfg.Sources.Delete(ctx, id); err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot delete the source", err)
	}
	err = a.gw.UpdateRuntimeSources(func(cur []config.Source) []config.Source {
		out := cur[:0]
		for _, s := range cur {
			if s.ID != id {
				out = append(out, s)
			}
		}
		return out
	})
	if err != nil {
		a.log.Warn("runtime sources", "err", a.secrets.Redact(err.Error()))
	}
	return nil
}

func (a *API) listDead(c *fiber.Ctx) error {
	if a.cfg.Dead == nil {
		return hookgate.Errorf(hookgate.ENotFound, "dead letters are not available")
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	list, err := a.cfg.Dead.Dead(ctx)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot list dead jobs", err)
	}
	items, err := json.Marshal(list)
	if err != nil {
		return hookgate.WrapError(hookgate.EInternal, "encode dead jobs", err)
	}
	if string(items) == "null" {
		items = []byte("[]")
	}
	b, _ := json.Marshal(fiber.Map{"dead": json.RawMessage(items)})
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send([]byte(a.secrets.Redact(string(b))))
}

func (a *API) replay(c *fiber.Ctx) error {
	if a.cfg.Dead == nil {
		return hookgate.Errorf(hookgate.ENotFound, "dead letters are not available")
	}
	// job ids may hold a "/" (route jobs: <event id>/<route>), sent as %2F
	id := param(c, "id")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	if err := a.cfg.Dead.Replay(ctx, id); err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			return hookgate.WrapError(hookgate.ENotFound, fmt.Sprintf("no dead job %q", id), err)
		}
		if hookgate.ErrorCode(err) == hookgate.ENotFound {
			return err
		}
		return hookgate.WrapError(hookgate.EUnavailable, "cannot replay the job", err)
	}
	return c.JSON(fiber.Map{"status": "replayed", "id": id})
}

func (a *API) disabledRoutes(c *fiber.Ctx) error {
	if a.cfg.Routes == nil {
		return hookgate.Errorf(hookgate.ENotFound, "routes are not available")
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	list, err := a.cfg.Routes.Disabled(ctx)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot list disabled routes", err)
	}
	return c.JSON(fiber.Map{"disabled": list})
}

func (a *API) enableRoute(c *fiber.Ctx) error {
	if a.cfg.Routes == nil {
		return hookgate.Errorf(hookgate.ENotFound, "routes are not available")
	}
	name := param(c, "name")
	ctx, cancel := opCtx(c)
	defer cancel()
	if !slices.Contains(a.cfg.Routes.Routes(), name) {
		return hookgate.Errorf(hookgate.ENotFound, "unknown route %q", name)
	}
	if err := a.cfg.Routes.Enable(ctx, name); err != nil {
		if hookgate.ErrorCode(err) == hookgate.ENotFound {
			return err
		}
		return hookgate.WrapError(hookgate.EUnavailable, "cannot enable the route", err)
	}
	return c.JSON(fiber.Map{"status": "enabled", "route": name})
}

// call makes one REST call. The portal's answers keep the Bitrix24
// envelope: {"result": ...} on success (with "next" and "total" for a list
// method when the Caller is a PagedCaller), {"error", "error_description",
// "status"} with 502 for an error answer of the portal.
func (a *API) call(c *fiber.Ctx) error {
	if a.cfg.Caller == nil {
		return hookgate.Errorf(hookgate.ENotFound, "outbound calls are not available")
	}
	params := map[string]any{}
	if body := bytes.TrimSpace(c.Body()); len(body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return hookgate.Errorf(hookgate.EBadRequest, "body: want a JSON object of params: %s", jsonProblem(err))
		}
	}
	ctx, cancel := opCtx(c)
	defer cancel()
	var ans callAnswer
	var err error
	if pc, ok := a.cfg.Caller.(PagedCaller); ok {
		var res *outbound.Result
		if res, err = pc.CallPaged(ctx, param(c, "portal"), param(c, "method"), params); err == nil {
			ans = callAnswer{Result: res.Result, Next: res.Next, Total: res.Total}
		}
	} else {
		ans.Result, err = a.cfg.Caller.Call(ctx, param(c, "portal"), param(c, "method"), params)
	}
	var ae *outbound.APIError
	switch {
	case err == nil:
		if len(ans.Result) == 0 {
			ans.Result = json.RawMessage("null")
		}
		b, _ := json.Marshal(ans)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send([]byte(a.secrets.Redact(string(b))))
	case errors.As(err, &ae):
		code := ae.Code
		if code == "" {
			code = "upstream_error"
		}
		return c.Status(fiber.StatusBadGateway).JSON(fiber.Map{
			"error":             code,
			"error_description": a.secrets.Redact(ae.Description),
			"status":            ae.Status,
		})
	case errors.Is(err, outbound.ErrCircuitOpen):
		return hookgate.WrapError(hookgate.EUnavailable, "circuit open", err)
	}
	var he *hookgate.Error
	if errors.As(err, &he) {
		return err
	}
	return hookgate.WrapError(hookgate.EUnavailable, "portal unreachable", err)
}
