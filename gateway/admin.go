package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
)

// Admin configures the admin API under /admin (SPEC.md, "Inbound HTTP").
type Admin struct {
	// Token is the secret reference of the bearer token (admin.token). It
	// is read through Deps.Secrets on every request, so a rotation takes
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

// Routes is what the admin API needs of the route engine.
type Routes interface {
	// Disabled lists the disabled routes (answered as JSON).
	Disabled(ctx context.Context) (any, error)
	// Enable re-enables a route; an unknown route is an error with code
	// hookgate.ENotFound.
	Enable(ctx context.Context, name string) error
}

// SourceStore persists the sources created at runtime. Every instance
// watches it and applies changes with SetRuntimeSources; the instance that
// took the admin request also applies its change at once.
type SourceStore interface {
	Put(ctx context.Context, src config.Source) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]config.Source, error)
}

// DeadLetters is what the admin API needs of the durable jobs. List's
// result is answered as JSON. Replay of an unknown id must return an error
// with code hookgate.ENotFound (DeadLetterFuncs can map a sentinel).
type DeadLetters interface {
	List(ctx context.Context) (any, error)
	Replay(ctx context.Context, id string) error
}

// DeadLetterFuncs adapts functions to DeadLetters, e.g. for a jobs.Queue:
//
//	gateway.DeadLetterFuncs{
//		ListFunc:   func(ctx context.Context) (any, error) { return q.Dead(ctx) },
//		ReplayFunc: q.Replay,
//		NotFound:   jobs.ErrNotFound,
//	}
type DeadLetterFuncs struct {
	ListFunc   func(ctx context.Context) (any, error)
	ReplayFunc func(ctx context.Context, id string) error
	// NotFound is the sentinel ReplayFunc wraps for an unknown id.
	NotFound error
}

// List implements DeadLetters.
func (f DeadLetterFuncs) List(ctx context.Context) (any, error) { return f.ListFunc(ctx) }

// Replay implements DeadLetters.
func (f DeadLetterFuncs) Replay(ctx context.Context, id string) error {
	err := f.ReplayFunc(ctx, id)
	if err != nil && f.NotFound != nil && errors.Is(err, f.NotFound) {
		return hookgate.WrapError(hookgate.ENotFound, fmt.Sprintf("no dead job %q", id), err)
	}
	return err
}

// Caller makes one Bitrix24 REST call on a configured portal. An unknown
// portal is an error with code hookgate.ENotFound; answers of the portal
// are *outbound.APIError values.
type Caller interface {
	Call(ctx context.Context, portal, method string, params map[string]any) (json.RawMessage, error)
}

// adminTimeout bounds the store, dead-letter and call operations of one
// admin request.
const adminTimeout = 30 * time.Second

func (g *Gateway) mountAdmin(app *fiber.App) {
	a := app.Group("/admin", g.adminLog, g.adminAuth)
	a.Get("/sources", g.adminListSources)
	a.Put("/sources/:id", g.adminPutSource)
	a.Delete("/sources/:id", g.adminDeleteSource)
	a.Get("/dead", g.adminListDead)
	a.Post("/dead/:id/replay", g.adminReplay)
	a.Post("/call/:portal/:method", g.adminCall)
	a.Get("/routes/disabled", g.adminDisabledRoutes)
	a.Post("/routes/:name/enable", g.adminEnableRoute)
	a.All("/*", func(*fiber.Ctx) error {
		return hookgate.Errorf(hookgate.ENotFound, "no such admin endpoint")
	})
}

// adminLog records every admin request: method, path, status, remote
// address and duration. Never the Authorization header or a body.
func (g *Gateway) adminLog(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		_ = writeAdminError(c, err)
	}
	status := c.Response().StatusCode()
	attrs := []any{
		"method", c.Method(),
		"path", g.deps.Secrets.Redact(c.Path()),
		"status", status,
		"remote_addr", c.IP(),
		"duration", time.Since(start),
	}
	if err != nil {
		attrs = append(attrs, "code", hookgate.ErrorCode(err))
		if status >= 500 {
			attrs = append(attrs, "err", g.deps.Secrets.Redact(err.Error()))
		}
	}
	g.log.Info("admin request", attrs...)
	return nil
}

// writeAdminError answers like writeError, with the caller-safe message of
// client errors (409, 404, 400) so that an operator sees what was wrong.
func writeAdminError(c *fiber.Ctx, err error) error {
	code := hookgate.ErrorCode(err)
	status := Status(code)
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

// adminAuth checks the bearer token against admin.token in constant time.
func (g *Gateway) adminAuth(c *fiber.Ctx) error {
	given, ok := bearer(c.Get(fiber.HeaderAuthorization))
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="hookgate-admin"`)
		return hookgate.Errorf(hookgate.EUnauthorized, "bearer token required")
	}
	vals, err := g.deps.Secrets.Secrets(c.UserContext(), g.deps.Admin.Token)
	if err != nil {
		// not found or store down: the gateway cannot decide
		return hookgate.WrapError(hookgate.EUnavailable, "admin token unavailable", err)
	}
	sum := sha256.Sum256([]byte(given))
	match := 0
	for _, v := range vals {
		if v.Reveal() == "" {
			continue
		}
		want := sha256.Sum256([]byte(v.Reveal()))
		match |= subtle.ConstantTimeCompare(sum[:], want[:])
	}
	if match != 1 {
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

func adminCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), adminTimeout)
}

// publicSource is a source as the admin API shows it: the secret is a
// reference (a path), and any value the store has served is redacted in
// case one was put where a reference belongs.
func (g *Gateway) publicSource(s SourceInfo) SourceInfo {
	r := g.deps.Secrets.Redact
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
func sentSecrets(b sourceBody) []string {
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
func (g *Gateway) scrub(msg string, sent []string) string {
	for _, v := range sent {
		q := strconv.Quote(v)
		msg = strings.ReplaceAll(msg, q, `"`+hookgate.Redacted+`"`)
		msg = strings.ReplaceAll(msg, q[1:len(q)-1], hookgate.Redacted)
		msg = strings.ReplaceAll(msg, v, hookgate.Redacted)
	}
	return g.deps.Secrets.Redact(msg)
}

func (g *Gateway) adminListSources(c *fiber.Ctx) error {
	list := g.Sources()
	out := make([]SourceInfo, len(list))
	for i, s := range list {
		out[i] = g.publicSource(s)
	}
	return c.JSON(fiber.Map{"sources": out})
}

// sourceBody is the JSON body of PUT /admin/sources/{id}: the fields of a
// sources entry.
type sourceBody struct {
	ID            string            `json:"id"`
	Provider      string            `json:"provider"`
	Secret        string            `json:"secret"`
	Event         string            `json:"event"`
	AuthParameter string            `json:"auth_parameter"`
	MaxBodyBytes  int64             `json:"max_body_bytes"`
	Rate          *config.Rate      `json:"rate"`
	Options       map[string]string `json:"options"`
}

func (g *Gateway) isFileSource(id string) bool {
	for _, s := range g.fileSrcs {
		if s.ID == id {
			return true
		}
	}
	return false
}

// param returns a path parameter as a string of its own (Fiber's point
// into the connection's buffer, reused by the next request).
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

func (g *Gateway) adminPutSource(c *fiber.Ctx) error {
	id := param(c, "id")
	if g.isFileSource(id) {
		return hookgate.Errorf(hookgate.EConflict, "source %q is defined in the config file and is read-only", id)
	}
	var b sourceBody
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
	src := config.Source{
		ID: id, Provider: b.Provider, Secret: b.Secret, Event: b.Event,
		AuthParameter: b.AuthParameter, MaxBodyBytes: b.MaxBodyBytes, Rate: b.Rate, Options: b.Options,
	}
	providers := map[string]bool{}
	for _, n := range g.deps.Registry.Names() {
		providers[n] = true
	}
	// no answer or message repeats a secret-bearing value the caller sent
	sent := sentSecrets(b)
	if ps := config.ValidateSource("source", src, providers); len(ps) > 0 {
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = p.String()
		}
		return hookgate.Errorf(hookgate.EBadRequest, "%s", g.scrub(strings.Join(msgs, "; "), sent))
	}
	if _, err := g.deps.Registry.New(src); err != nil {
		return hookgate.Errorf(hookgate.EBadRequest, "%s", g.scrub(err.Error(), sent))
	}
	ctx, cancel := adminCtx(c)
	defer cancel()
	if err := g.deps.Admin.Sources.Put(ctx, src); err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot store the source", err)
	}
	err := g.updateRuntime(func(cur []config.Source) []config.Source {
		out := cur[:0]
		for _, s := range cur {
			if s.ID != id {
				out = append(out, s)
			}
		}
		return append(out, src)
	})
	if err != nil {
		g.log.Warn("runtime sources", "err", g.scrub(err.Error(), sent))
	}
	out := g.publicSource(SourceInfo{Source: src, Runtime: true})
	out.Secret = hookgate.Redacted // the caller has it; GET /admin/sources lists the reference
	return c.JSON(out)
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

func (g *Gateway) adminDeleteSource(c *fiber.Ctx) error {
	id := param(c, "id")
	if g.isFileSource(id) {
		return hookgate.Errorf(hookgate.EConflict, "source %q is defined in the config file and is read-only", id)
	}
	ctx, cancel := adminCtx(c)
	defer cancel()
	stored, err := g.deps.Admin.Sources.List(ctx)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot read the runtime sources", err)
	}
	_, local, exists := g.Source(id)
	found := exists && local
	for _, s := range stored {
		found = found || s.ID == id
	}
	if !found {
		return hookgate.Errorf(hookgate.ENotFound, "no runtime source %q", id)
	}
	if err := g.deps.Admin.Sources.Delete(ctx, id); err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot delete the source", err)
	}
	err = g.updateRuntime(func(cur []config.Source) []config.Source {
		out := cur[:0]
		for _, s := range cur {
			if s.ID != id {
				out = append(out, s)
			}
		}
		return out
	})
	if err != nil {
		g.log.Warn("runtime sources", "err", g.deps.Secrets.Redact(err.Error()))
	}
	return c.JSON(fiber.Map{"status": "deleted", "id": id})
}

func (g *Gateway) adminListDead(c *fiber.Ctx) error {
	if g.deps.Admin.Dead == nil {
		return hookgate.Errorf(hookgate.ENotFound, "dead letters are not available")
	}
	ctx, cancel := adminCtx(c)
	defer cancel()
	list, err := g.deps.Admin.Dead.List(ctx)
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
	return c.Send([]byte(g.deps.Secrets.Redact(string(b))))
}

func (g *Gateway) adminReplay(c *fiber.Ctx) error {
	if g.deps.Admin.Dead == nil {
		return hookgate.Errorf(hookgate.ENotFound, "dead letters are not available")
	}
	// job ids may hold a "/" (route jobs: <event id>/<route>), sent as %2F
	id := param(c, "id")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	ctx, cancel := adminCtx(c)
	defer cancel()
	if err := g.deps.Admin.Dead.Replay(ctx, id); err != nil {
		if hookgate.ErrorCode(err) == hookgate.ENotFound {
			return err
		}
		return hookgate.WrapError(hookgate.EUnavailable, "cannot replay the job", err)
	}
	return c.JSON(fiber.Map{"status": "replayed", "id": id})
}

func (g *Gateway) adminDisabledRoutes(c *fiber.Ctx) error {
	if g.deps.Admin.Routes == nil {
		return hookgate.Errorf(hookgate.ENotFound, "routes are not available")
	}
	ctx, cancel := adminCtx(c)
	defer cancel()
	list, err := g.deps.Admin.Routes.Disabled(ctx)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "cannot list disabled routes", err)
	}
	return c.JSON(fiber.Map{"disabled": list})
}

func (g *Gateway) adminEnableRoute(c *fiber.Ctx) error {
	if g.deps.Admin.Routes == nil {
		return hookgate.Errorf(hookgate.ENotFound, "routes are not available")
	}
	name := param(c, "name")
	ctx, cancel := adminCtx(c)
	defer cancel()
	if err := g.deps.Admin.Routes.Enable(ctx, name); err != nil {
		if hookgate.ErrorCode(err) == hookgate.ENotFound {
			return err
		}
		return hookgate.WrapError(hookgate.EUnavailable, "cannot enable the route", err)
	}
	return c.JSON(fiber.Map{"status": "enabled", "route": name})
}

// adminCall makes one REST call. The portal's answers keep the Bitrix24
// envelope: {"result": ...} on success, {"error", "error_description",
// "status"} with 502 for an error answer of the portal.
func (g *Gateway) adminCall(c *fiber.Ctx) error {
	if g.deps.Admin.Caller == nil {
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
	ctx, cancel := adminCtx(c)
	defer cancel()
	res, err := g.deps.Admin.Caller.Call(ctx, param(c, "portal"), param(c, "method"), params)
	var ae *outbound.APIError
	switch {
	case err == nil:
		if len(res) == 0 {
			res = json.RawMessage("null")
		}
		b, _ := json.Marshal(fiber.Map{"result": res})
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send([]byte(g.deps.Secrets.Redact(string(b))))
	case errors.As(err, &ae):
		code := ae.Code
		if code == "" {
			code = "upstream_error"
		}
		return c.Status(fiber.StatusBadGateway).JSON(fiber.Map{
			"error":             code,
			"error_description": g.deps.Secrets.Redact(ae.Description),
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
