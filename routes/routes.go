package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/outbound/delivery"
)

// Names on the bus.
const (
	// DefaultConsumer is the durable consumer of the inbound stream.
	DefaultConsumer = "routes"
	// DisabledBucketName is the KV bucket of routes disabled by a 410.
	DisabledBucketName = "hookgate_routes_disabled"
	// JobKind is the Kind of route jobs.
	JobKind = "route"
	// DefaultKey is the entity key template of a route without one.
	DefaultKey = `{{ param "data[FIELDS][ID]" }}`
)

// ErrDisabled is wrapped by the error of a job whose route is disabled.
var ErrDisabled = errors.New("routes: route disabled")

// Secrets reads secret references (vault.Store implements it).
type Secrets interface {
	Secret(ctx context.Context, ref string) (hookgate.Secret, error)
}

// Deps is what an Engine works with.
type Deps struct {
	Queue   *jobs.Queue                   // required
	Portals map[string]*outbound.Bitrix24 // by portal id; one per portal a route calls
	// Batchers gather route calls to a portal into batch requests (by
	// portal id); a portal without one is called one call at a time.
	Batchers map[string]*outbound.Batcher
	// Observe receives routing metrics; nil fields are skipped.
	Observe Observer
	Secrets Secrets // required when a route delivers
	// Disabled is the KV bucket of disabled routes (DisabledBucket);
	// required when a route delivers.
	Disabled jetstream.KeyValue
	// Delivery posts to the platform; default delivery.New with Recorder,
	// Clock and Logger.
	Delivery *delivery.Client
	Recorder hookgate.Recorder
	Logger   *slog.Logger
	Clock    func() time.Time
	// Stream is the inbound stream; "" finds the stream of hookgate.in.>.
	Stream string
	// Consumer is the durable consumer name (default "routes").
	Consumer string
	// Sync is two-way sync state (echo.go); nil switches it off.
	Sync *Sync
}

// Engine routes events to jobs and runs them.
type Engine struct {
	routes []*route
	byName map[string]*route
	deps   Deps
	// created is when New ran: a routes consumer created for the first
	// time starts with the events stored from then on.
	created time.Time
	log     *slog.Logger
	now     func() time.Time
}

type route struct {
	cfg    config.Route
	key    *template.Template
	params any // compiled call.params: map[string]any, []any, *template.Template or a scalar

	sync *syncRole // echo.go; nil when the route plays no part in two-way sync
}

// New compiles the routes and checks them against deps. Problems are
// reported all at once, each with its key path (config.Problems).
func New(routes []config.Route, deps Deps) (*Engine, error) {
	e := &Engine{byName: map[string]*route{}, deps: deps, log: deps.Logger, now: deps.Clock, created: time.Now()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	var ps config.Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, config.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if deps.Queue == nil {
		add("", "routes: no job queue")
	}
	delivers := false
	for i, rc := range routes {
		path := fmt.Sprintf("routes[%d]", i)
		if _, dup := e.byName[rc.Name]; dup {
			add(path+".name", "duplicate name %q", rc.Name)
		}
		r := &route{cfg: rc, key: compileKey(path, rc.Key, add)}
		if deps.Sync != nil {
			if r.sync = roleOf(rc); r.sync != nil && r.sync.write {
				deps.Sync.written[rc.Call.Portal+"."+r.sync.entity] = true
			}
		}
		if rc.Call != nil {
			if deps.Portals[rc.Call.Portal] == nil {
				add(path+".call.portal", "no client for portal %q", rc.Call.Portal)
			}
			r.params = compile(path+".call.params", rc.Call.Params, add)
		}
		if rc.Deliver != nil {
			delivers = true
		}
		e.routes = append(e.routes, r)
		e.byName[rc.Name] = r
	}
	if delivers && deps.Secrets == nil {
		add("", "routes: a route delivers but there is no secret store")
	}
	if delivers && deps.Disabled == nil {
		add("", "routes: a route delivers but there is no bucket of disabled routes")
	}
	if len(ps) > 0 {
		return nil, ps
	}
	if e.deps.Delivery == nil {
		e.deps.Delivery = delivery.New(delivery.WithRecorder(deps.Recorder), delivery.WithClock(e.now), delivery.WithLogger(e.log))
	}
	if e.deps.Consumer == "" {
		e.deps.Consumer = DefaultConsumer
	}
	return e, nil
}

// stubFuncs let templates parse; each render binds the real ones.
var stubFuncs = template.FuncMap{
	"param": func(string) string { return "" },
	"json":  func(string) (string, error) { return "", nil },
}

func parse(name, src string) (*template.Template, error) {
	t, err := template.New(name).Funcs(stubFuncs).Option("missingkey=zero").Parse(src)
	if err != nil {
		// "template: NAME:1: unclosed action" → "line 1: unclosed action";
		// the caller names the key path.
		msg := strings.TrimPrefix(err.Error(), "template: "+name+":")
		return nil, fmt.Errorf("template parse error: line %s", msg)
	}
	return t, nil
}

// Check compiles the templates of routes (key and call.params) and
// returns their syntax errors with key paths, as New would report them;
// config validation runs it before anything is opened.
func Check(routes []config.Route) config.Problems {
	var ps config.Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, config.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	for i, rc := range routes {
		path := fmt.Sprintf("routes[%d]", i)
		compileKey(path, rc.Key, add)
		if rc.Call != nil {
			compile(path+".call.params", rc.Call.Params, add)
		}
	}
	return ps
}

// compileKey compiles the key template of the route at path (DefaultKey
// when src is empty), recording a problem at path.key.
func compileKey(path, src string, add func(string, string, ...any)) *template.Template {
	if src == "" {
		src = DefaultKey
	}
	t, err := parse(path+".key", src)
	if err != nil {
		add(path+".key", "%v", err)
	}
	return t
}

// compile turns string leaves of v into templates, recording problems
// with their key paths.
func compile(path string, v any, add func(string, string, ...any)) any {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") {
			return x
		}
		t, err := parse(path, x)
		if err != nil {
			add(path, "%v", err)
			return x
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // problems in a stable order
		for _, k := range keys {
			out[k] = compile(path+"."+k, x[k], add)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = compile(path+"["+strconv.Itoa(i)+"]", el, add)
		}
		return out
	}
	return v
}

// Match reports whether a pattern of `on` matches s: "*" matches
// anything, "PREFIX*" a prefix, anything else exactly. Event names compare
// case-insensitively (Bitrix24 documents them in both cases), source ids
// exactly.
func Match(pattern, s string, fold bool) bool {
	eq := func(a, b string) bool { return a == b }
	if fold {
		eq = strings.EqualFold
	}
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return len(s) >= len(prefix) && eq(s[:len(prefix)], prefix)
	}
	return eq(pattern, s)
}

func (r *route) matches(source, event string) bool {
	return Match(r.cfg.On.Source, source, false) && Match(r.cfg.On.Event, event, true)
}

// sourceOf returns the source id and event name of ev.
func sourceOf(ev *hookgate.Event) (source, event string) {
	source = ev.Data.WebhookID
	if source == "" {
		source = strings.TrimPrefix(ev.Source, "hookgate/")
	}
	event = ev.Data.Event
	if event == "" {
		event = ev.Type
	}
	return source, event
}

// renderer executes templates over one event.
type renderer struct {
	ev     *hookgate.Event
	parsed any
	parseE error
	funcs  template.FuncMap
}

func newRenderer(ev *hookgate.Event) *renderer {
	r := &renderer{ev: ev}
	r.funcs = template.FuncMap{
		"param": func(name string) string { return ev.Data.Params[name] },
		"json":  r.jsonField,
	}
	return r
}

// jsonField reads a dot path ("a.b.0.c") from data.json: strings as they
// are, other scalars in their JSON form, objects and arrays as JSON, a
// missing path as "".
func (r *renderer) jsonField(path string) (string, error) {
	if r.parsed == nil && r.parseE == nil {
		if len(r.ev.Data.JSON) == 0 {
			return "", nil
		}
		dec := json.NewDecoder(bytes.NewReader(r.ev.Data.JSON))
		dec.UseNumber()
		r.parseE = dec.Decode(&r.parsed)
	}
	if r.parseE != nil {
		return "", fmt.Errorf("data.json: %w", r.parseE)
	}
	v := r.parsed
	if path != "" && path != "." {
		for _, seg := range strings.Split(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				v = x[seg]
			case []any:
				i, err := strconv.Atoi(seg)
				if err != nil || i < 0 || i >= len(x) {
					return "", nil
				}
				v = x[i]
			default:
				return "", nil
			}
		}
	}
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func (r *renderer) exec(t *template.Template) (string, error) {
	c, err := t.Clone()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := c.Funcs(r.funcs).Execute(&b, r.ev); err != nil {
		return "", fmt.Errorf("%s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// render executes a compiled params tree.
func (r *renderer) render(v any) (any, error) {
	switch x := v.(type) {
	case *template.Template:
		return r.exec(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, el := range x {
			rv, err := r.render(el)
			if err != nil {
				return nil, err
			}
			out[k] = rv
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			rv, err := r.render(el)
			if err != nil {
				return nil, err
			}
			out[i] = rv
		}
		return out, nil
	}
	return v, nil
}

// Routes returns the names of the routes, in config order.
func (e *Engine) Routes() []string {
	names := make([]string, len(e.routes))
	for i, r := range e.routes {
		names[i] = r.cfg.Name
	}
	return names
}

// Jobs returns the jobs ev starts: one per matching route, in config order.
func (e *Engine) Jobs(ev *hookgate.Event, raw []byte) ([]jobs.Job, error) {
	source, event := sourceOf(ev)
	var out []jobs.Job
	rn := newRenderer(ev)
	for _, r := range e.routes {
		if !r.matches(source, event) {
			continue
		}
		key, err := rn.exec(r.key)
		if err != nil {
			// Keep the event: an unkeyed job is ordered with the
			// source's other unkeyed jobs.
			e.log.Warn("route key template failed; ordering by source only", "route", r.cfg.Name, "event_id", ev.ID, "err", err)
			key = ""
		}
		p, err := json.Marshal(payload{Route: r.cfg.Name, Event: raw})
		if err != nil {
			return nil, err
		}
		out = append(out, jobs.Job{
			ID:       ev.ID + "/" + r.cfg.Name,
			Kind:     JobKind,
			Key:      source + "/" + key,
			EventID:  ev.ID,
			Payload:  p,
			Coalesce: r.cfg.Coalesce == config.CoalesceLatest,
		})
	}
	return out, nil
}

// payload is a route job's payload.
type payload struct {
	Route string          `json:"route"`
	Event json.RawMessage `json:"event"`
}

// DisabledRoute is an entry of the disabled-routes bucket.
type DisabledRoute struct {
	Route   string    `json:"route"`
	URL     string    `json:"url"`
	JobID   string    `json:"job_id"`
	EventID string    `json:"event_id"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// DisabledBucket opens (creating it if needed) the KV bucket of disabled
// routes, kept on replicas servers (bus.replicas).
func DisabledBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DisabledBucketName,
		Description: "hookgate routes whose deliveries are disabled (410 Gone)",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("routes: bucket %s: %w", DisabledBucketName, err)
	}
	return kv, nil
}

// EnableRoute re-enables a route's deliveries in the bucket kv.
func EnableRoute(ctx context.Context, kv jetstream.KeyValue, name string) error {
	if err := kv.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("routes: enable %q: %w", name, err)
	}
	return nil
}

// ListDisabled lists the disabled routes in the bucket kv.
func ListDisabled(ctx context.Context, kv jetstream.KeyValue) ([]DisabledRoute, error) {
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("routes: list disabled: %w", err)
	}
	var out []DisabledRoute
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("routes: list disabled: %w", err)
		}
		var d DisabledRoute
		if json.Unmarshal(e.Value(), &d) != nil {
			d = DisabledRoute{Route: k}
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b DisabledRoute) int { return strings.Compare(a.Route, b.Route) })
	return out, nil
}

// Enable re-enables a route disabled by a 410.
func (e *Engine) Enable(ctx context.Context, name string) error {
	if e.deps.Disabled == nil {
		return errors.New("routes: no bucket of disabled routes")
	}
	if err := EnableRoute(ctx, e.deps.Disabled, name); err != nil {
		return err
	}
	e.log.Info("route enabled", "route", name)
	return nil
}

// Disabled lists the routes disabled by a 410.
func (e *Engine) Disabled(ctx context.Context) ([]DisabledRoute, error) {
	if e.deps.Disabled == nil {
		return nil, nil
	}
	return ListDisabled(ctx, e.deps.Disabled)
}

// disabled reports whether the route's deliveries are off.
func (e *Engine) disabled(ctx context.Context, name string) (bool, error) {
	_, err := e.deps.Disabled.Get(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read disabled routes: %w", err)
}

func (e *Engine) disable(ctx context.Context, d DisabledRoute) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := e.deps.Disabled.Put(ctx, d.Route, b); err != nil {
		return fmt.Errorf("disable route %q: %w", d.Route, err)
	}
	return nil
}
