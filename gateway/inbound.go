package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/credential"
	"github.com/hookgate/hookgate/telemetry"
)

// inbound is one webhook request on its way through the checks.
type inbound struct {
	start    time.Time
	src      *source
	eventID  string
	event    string
	outcome  string
	err      error
	status   int
	keyRoute bool
	table    *sourceTable
	msg      *providers.Message // nil until the provider parsed the request
	// method and path of a request fasthttp dropped before answering it
	// (408, 431): the row takes them instead of the request's
	method, path string

	// the request's span and its context (nil when tracing is off), and
	// the trace context the event carries (the publish span's)
	span  trace.Span
	ctx   context.Context
	trace telemetry.Carrier

	// Computed once per request and shared by the event and the history
	// row (docs/performance.md): the redaction, the request headers with
	// credentials redacted, and the body redacted.
	red        *redaction
	hdrs       []field
	hdrsDone   bool
	redBody    string
	redBodySet bool
}

// field is a name and a value, already redacted.
type field struct{ name, value string }

func (g *Gateway) handleSource(c *fiber.Ctx) error {
	t := g.table.Load()
	in := &inbound{start: time.Now(), table: t}
	if telemetry.Enabled() {
		g.startSpan(c, in, "/webhook/{source}")
	}
	err := g.checkMethod(c)
	if err == nil {
		in.src = t.byID[c.Params("source")]
		if in.src == nil || in.src.keyRouted {
			in.src = nil
			err = hookgate.Errorf(hookgate.EUnknownSource, "unknown source")
		}
	}
	if err == nil {
		err = g.accept(c, in, "")
	}
	return g.finish(c, in, err)
}

func (g *Gateway) handleKey(c *fiber.Ctx) error {
	in := &inbound{start: time.Now(), keyRoute: true, table: g.table.Load()}
	if telemetry.Enabled() {
		g.startSpan(c, in, "/webhooks/{api_key}")
	}
	err := g.checkMethod(c)
	var key string
	if err == nil {
		key = c.Params("key")
		in.src, err = g.lookupKey(c.UserContext(), in.table, key)
	}
	if err == nil {
		err = g.accept(c, in, key)
	}
	return g.finish(c, in, err)
}

func (g *Gateway) checkMethod(c *fiber.Ctx) error {
	if c.Method() != fiber.MethodPost {
		return hookgate.Errorf(hookgate.EMethodNotAllowed, "only POST")
	}
	return nil
}

// secretMissing answers a request to a source whose secret the store does
// not have (a wrong reference, a path not yet written): 503 with
// Retry-After, so that the sender keeps the event while an operator fixes
// it. It logs once per source, not per request, and counts every request.
// A request without a credential never gets here: it is a 401, decided
// before the secrets are read.
func (g *Gateway) secretMissing(s *source, err error) error {
	if g.deps.SecretMissing != nil {
		g.deps.SecretMissing(s.cfg.ID)
	}
	if s.secretMissing.CompareAndSwap(false, true) {
		g.log.Error("source secret not found: its webhooks are answered 503 until it is", "source", s.cfg.ID,
			"secret", s.cfg.Secret, "err", g.deps.Secrets.Redact(err.Error()))
	}
	return hookgate.WrapError(hookgate.EUnavailable, "the source's secret cannot be read", err)
}

// lookupKey finds the KeyRouted source whose secret is key, comparing in
// constant time with every candidate (credential.Match: not even the
// key's length leaks). A source whose secret cannot be read
// makes an unmatched key a 503, not a 404: it might have been that one.
func (g *Gateway) lookupKey(ctx context.Context, t *sourceTable, key string) (*source, error) {
	var found *source
	var unavailable error
	for _, s := range t.byKey {
		vals, err := g.deps.Secrets.Secrets(ctx, s.cfg.Secret)
		if err != nil {
			if hookgate.ErrorCode(err) == hookgate.ENotFound {
				err = g.secretMissing(s, err)
			}
			unavailable = err
			continue
		}
		if s.secretMissing.Load() && s.secretMissing.CompareAndSwap(true, false) {
			g.log.Info("source secret found again", "source", s.cfg.ID, "secret", s.cfg.Secret)
		}
		if credential.Match(key, vals) && found == nil {
			found = s
		}
	}
	switch {
	case found != nil:
		return found, nil
	case unavailable != nil:
		// the key may have been the one of the source we cannot read
		return nil, asCode(unavailable, hookgate.EUnavailable)
	}
	return nil, hookgate.Errorf(hookgate.EUnknownSource, "unknown api key")
}

// accept runs the source's checks and stores the event.
func (g *Gateway) accept(c *fiber.Ctx, in *inbound, pathKey string) error {
	s := in.src
	body := c.Request().Body() // raw: no transparent decompression
	if int64(len(body)) > s.limit {
		return hookgate.Errorf(hookgate.EBodyTooLarge, "body over %d bytes", s.limit)
	}
	if formFieldsOver(c.Request().Header.ContentType(), body, g.cfg.MaxFormFields) {
		// counted, not parsed: the provider would decode every field
		// before the credential is checked
		return hookgate.Errorf(hookgate.EBodyTooLarge, "form over %d fields", g.cfg.MaxFormFields)
	}
	if s.limiter != nil && !s.limiter.Allow() {
		return hookgate.Errorf(hookgate.ERateLimited, "source rate limit")
	}
	if n := int64(len(body)); n > largeBody {
		release, err := g.inflight.reserve(c.UserContext(), n)
		if err != nil {
			return err
		}
		defer release()
	}
	req := &providers.Request{
		SourceID:    s.cfg.ID,
		Method:      c.Method(),
		ContentType: string(c.Request().Header.ContentType()),
		Header:      fastHeader{&c.Request().Header},
		Query:       queryValues(c.Context().QueryArgs()),
		PathKey:     pathKey,
		Body:        body,
		Now:         g.deps.Now(),
		RemoteAddr:  c.IP(),
	}
	msg, err := s.provider.Parse(req)
	if err != nil {
		return asCode(err, hookgate.EBadRequest)
	}
	in.msg = msg
	ctx := c.UserContext()
	ref := s.cfg.Secret
	secrets := func(ctx context.Context) ([]hookgate.Secret, error) {
		return g.deps.Secrets.Secrets(ctx, ref)
	}
	if err := s.provider.Verify(ctx, req, msg, secrets); err != nil {
		if hookgate.ErrorCode(err) == hookgate.ENotFound {
			return g.secretMissing(s, err)
		}
		return asCode(err, hookgate.EInvalidToken)
	}
	if s.secretMissing.Load() && s.secretMissing.CompareAndSwap(true, false) {
		g.log.Info("source secret found again", "source", s.cfg.ID, "secret", s.cfg.Secret)
	}
	// A copy: msg.Event is often a slice of the decoded body, which the
	// history row would otherwise keep alive whole until it is written.
	in.event = strings.Clone(msg.Event)
	if msg.DedupKey != "" {
		in.eventID = hookgate.EventID(s.cfg.ID, msg.DedupKey)
	} else {
		in.eventID = hookgate.NewUUID()
	}
	// The publish span starts before the event is encoded: the event
	// carries its trace context, the parent of the routing's span.
	subject := hookgate.InboundSubject(s.cfg.ID, msg.Event)
	ctx, pspan := telemetry.Start(ctx, telemetry.SpanPublish, producerSpan...)
	defer pspan.End()
	if pspan.IsRecording() {
		in.trace = telemetry.Inject(ctx)
		pspan.SetAttributes(
			attribute.String(telemetry.AttrMsgSystem, "nats"),
			attribute.String(telemetry.AttrMsgOperation, "send"),
			attribute.String(telemetry.AttrMsgDest, subject),
			attribute.String(telemetry.AttrMsgID, in.eventID),
		)
	}
	data, err := g.encodeEvent(c, req, msg, in)
	if err != nil {
		telemetry.Fail(pspan, hookgate.EInternal)
		return hookgate.WrapError(hookgate.EInternal, "encode event", err)
	}
	pctx, cancel := context.WithTimeout(ctx, g.deps.PublishTimeout)
	defer cancel()
	dup, err := g.deps.Bus.Publish(pctx, subject, in.eventID, data)
	if err != nil {
		if hookgate.ErrorCode(err) == hookgate.EBadRequest {
			telemetry.Fail(pspan, hookgate.EBadRequest)
			return err // refused before it was sent: the input is at fault
		}
		telemetry.Fail(pspan, hookgate.EUnavailable)
		return hookgate.WrapError(hookgate.EUnavailable, "the event bus cannot store the event", err)
	}
	if pspan.IsRecording() {
		pspan.SetAttributes(attribute.Bool(telemetry.AttrDuplicate, dup))
	}
	if dup {
		in.outcome = hookgate.OutcomeDuplicate
		return nil
	}
	in.outcome = hookgate.OutcomeAccepted
	return nil
}

// Span start options, made once: a variadic list built at each call
// would cost an allocation per request even with tracing off.
var (
	serverSpan   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
)

// startSpan starts the request's span ("POST /webhook/{source}") and
// makes its context the request's user context. A traceparent sent by the
// webhook's sender becomes a link, not the parent: the event's trace
// starts here (docs/operations.md, "Tracing", says why).
func (g *Gateway) startSpan(c *fiber.Ctx, in *inbound, route string) {
	opts := serverSpan
	if tp := c.Request().Header.Peek(telemetry.HeaderTraceParent); len(tp) > 0 && len(tp) <= 128 {
		ts := c.Request().Header.Peek(telemetry.HeaderTraceState)
		if len(ts) > 512 {
			ts = nil
		}
		if sc := telemetry.SpanContext(telemetry.Carrier{TraceParent: string(tp), TraceState: string(ts)}); sc.IsValid() {
			opts = append(slices.Clip(opts), trace.WithLinks(trace.Link{
				SpanContext: sc,
				Attributes:  []attribute.KeyValue{attribute.String(telemetry.AttrLinkReason, "sender traceparent")},
			}))
		}
	}
	ctx, span := telemetry.Start(c.UserContext(), fiber.MethodPost+" "+route, opts...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrHTTPMethod, ownMethod(c.Method())),
			attribute.String(telemetry.AttrHTTPRoute, g.cfg.BasePath+route),
			attribute.String(telemetry.AttrClient, c.IP()),
		)
	}
	in.ctx, in.span = ctx, span
	c.SetUserContext(ctx)
}

// endSpan sets the request span's outcome and ends it.
func (in *inbound) endSpan() {
	if in.span == nil {
		return
	}
	if in.span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.String(telemetry.AttrOutcome, in.outcome),
			attribute.Int(telemetry.AttrHTTPStatus, in.status),
		}
		if in.src != nil {
			attrs = append(attrs, attribute.String(telemetry.AttrSource, in.src.cfg.ID),
				attribute.String(telemetry.AttrProvider, in.src.cfg.Provider))
		}
		if in.event != "" {
			attrs = append(attrs, attribute.String(telemetry.AttrEvent, in.event))
		}
		if in.eventID != "" {
			attrs = append(attrs, attribute.String(telemetry.AttrEventID, in.eventID))
		}
		in.span.SetAttributes(attrs...)
		if in.err != nil {
			in.span.SetAttributes(attribute.String(telemetry.AttrErrorCode, hookgate.ErrorCode(in.err)))
			if in.status >= 500 {
				in.span.SetStatus(codes.Error, hookgate.ErrorCode(in.err))
			}
		}
	}
	in.span.End()
}

// asCode keeps err's code when it is a *hookgate.Error and gives other
// errors the fallback code.
func asCode(err error, fallback string) error {
	var he *hookgate.Error
	if errors.As(err, &he) {
		return err
	}
	return hookgate.WrapError(fallback, "", err)
}

// encodeEvent returns the CloudEvent of an accepted call as JSON, every
// credential redacted. The bytes are exactly what encoding/json makes of
// the hookgate.Event (struct fields in order, map keys sorted, HTML
// characters escaped, RawMessage compacted), written without reflection:
// the envelope is the largest cost of the inbound path after the store
// itself (docs/performance.md). The returned slice is not reused: the bus
// may hold it until the store is acknowledged.
func (g *Gateway) encodeEvent(c *fiber.Ctx, req *providers.Request, msg *providers.Message, in *inbound) ([]byte, error) {
	red := in.redaction(g)
	params := make([]field, 0, len(msg.Params))
	for k, v := range msg.Params {
		params = append(params, field{k, red.field(k, v)})
	}
	sortFields(params)
	body := in.redactedBody(g, c)
	hdrs := in.headers(g, c)

	size := 320 + len(in.eventID) + 2*len(in.src.cfg.ID) + len(in.src.cfg.Provider) + 2*len(msg.Event) +
		len(req.ContentType) + len(msg.JSON) + len(body) + len(body)/8
	for _, f := range params {
		size += len(f.name) + len(f.value) + 8
	}
	for _, f := range hdrs {
		size += len(f.name) + len(f.value) + 8
	}
	b := make([]byte, 0, size)
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendJSONString(b, in.eventID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, "hookgate/"+in.src.cfg.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, msg.Event)
	b = append(b, `,"time":"`...)
	b, err := req.Now.UTC().AppendText(b) // what time.Time.MarshalJSON writes
	if err != nil {
		return nil, err
	}
	b = append(b, `","datacontenttype":"application/json"`...)
	if in.trace.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendJSONString(b, in.trace.TraceParent)
		if in.trace.TraceState != "" {
			b = append(b, `,"tracestate":`...)
			b = appendJSONString(b, in.trace.TraceState)
		}
	}
	b = append(b, `,"data":{"webhookId":`...)
	b = appendJSONString(b, in.src.cfg.ID)
	b = append(b, `,"provider":`...)
	b = appendJSONString(b, in.src.cfg.Provider)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, msg.Event)
	b = append(b, `,"params":`...)
	b = appendJSONObject(b, params)
	b = append(b, `,"body":`...)
	b = appendJSONString(b, body)
	if len(msg.JSON) > 0 {
		var j string
		if bytes.Equal(msg.JSON, req.Body) {
			j = body // the same text: redact it once
		} else {
			j = red.value(red.json(string(msg.JSON)))
		}
		if len(j) > 0 {
			b = append(b, `,"json":`...)
			if b, err = appendRawJSON(b, []byte(j)); err != nil {
				return nil, err
			}
		}
	}
	b = append(b, `,"contentType":`...)
	b = appendJSONString(b, req.ContentType)
	b = append(b, `,"headers":`...)
	b = appendJSONObject(b, hdrs)
	b = append(b, "}}"...)
	return b, nil
}

// sensitive reports whether a parameter, field or header name carries a
// credential in this request: a credential word (hookgate.SensitiveName),
// any source's auth_parameter, or a name the provider listed.
func (in *inbound) sensitive(name string) bool {
	if sensitiveName(name) || (in.table != nil && in.table.authParams[name]) {
		return true
	}
	if in.msg != nil {
		for _, r := range in.msg.Redact {
			if r == name {
				return true
			}
		}
	}
	return false
}

// redaction returns the request's redaction, made once: the store's
// values, and the values of this request's sensitive parameters that the
// store does not know (a wrong token, a refresh token), cut wherever
// else they appear.
func (in *inbound) redaction(g *Gateway) *redaction {
	if in.red != nil {
		return in.red
	}
	r := &redaction{redact: g.deps.Secrets.Redact, sensitive: in.sensitive}
	if in.msg != nil {
		var vals []string
		for k, v := range in.msg.Params {
			if v != "" && v != hookgate.Redacted && in.sensitive(k) && g.deps.Secrets.Redact(v) != hookgate.Redacted {
				vals = append(vals, v)
			}
		}
		if len(vals) > 0 {
			r.extra = hookgate.NewRedactor(vals...)
		}
	}
	in.red = r
	return r
}

// redactedBody returns the redacted view of the request body, computed
// once per request for the event and the history row.
func (in *inbound) redactedBody(g *Gateway, c *fiber.Ctx) string {
	if !in.redBodySet {
		in.redBody = in.redaction(g).body(string(c.Request().Header.ContentType()), c.Request().Body())
		in.redBodySet = true
	}
	return in.redBody
}

// headers returns the request headers, credentials redacted, sorted by
// name, one value per name (the last one received, as a map would keep),
// computed once per request.
func (in *inbound) headers(g *Gateway, c *fiber.Ctx) []field {
	if in.hdrsDone {
		return in.hdrs
	}
	h := &c.Request().Header
	out := make([]field, 0, h.Len()+4)
	h.VisitAll(func(k, v []byte) {
		name := headerNames.getBytes(k)
		value := in.redaction(g).field(name, string(v))
		for i := range out {
			if out[i].name == name {
				out[i].value = value
				return
			}
		}
		out = append(out, field{name, value})
	})
	sortFields(out)
	in.hdrs, in.hdrsDone = out, true
	return out
}

func sortFields(fs []field) {
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.name, b.name) })
}

// finish answers the request and records it.
func (g *Gateway) finish(c *fiber.Ctx, in *inbound, err error) error {
	if err != nil {
		in.outcome = hookgate.OutcomeRejected
		in.err = err
		if hookgate.ErrorCode(err) == hookgate.EInternal || hookgate.ErrorCode(err) == hookgate.EUnavailable {
			g.log.WarnContext(c.UserContext(), "inbound request failed", "source", in.sourceID(), "code", hookgate.ErrorCode(err), "err", g.deps.Secrets.Redact(err.Error()))
		}
		_ = writeError(c, err)
	} else {
		// what c.JSON(fiber.Map{"status": ..., "id": ...}) writes
		b := make([]byte, 0, 32+len(in.eventID)+len(in.outcome))
		b = append(b, `{"id":`...)
		b = appendJSONString(b, in.eventID)
		b = append(b, `,"status":`...)
		b = appendJSONString(b, in.outcome)
		b = append(b, '}')
		c.Response().SetBodyRaw(b)
		c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	}
	in.status = c.Response().StatusCode()
	d := time.Since(in.start)
	if g.deps.Observe != nil {
		provider := ""
		if in.src != nil {
			provider = in.src.cfg.Provider
		}
		g.deps.Observe(in.sourceID(), provider, in.outcome, d)
	}
	if g.deps.Recorder != nil {
		x := g.row(c, in, d)
		if in.ctx != nil {
			x.TraceID = telemetry.TraceID(in.ctx)
		}
		g.deps.Recorder.Record(x)
	}
	in.endSpan()
	return nil
}

func (in *inbound) sourceID() string {
	if in.src == nil {
		return ""
	}
	return in.src.cfg.ID
}

// row builds the history row of an inbound request, redacted and truncated.
func (g *Gateway) row(c *fiber.Ctx, in *inbound, d time.Duration) hookgate.Exchange {
	x := hookgate.Exchange{
		TS:         in.start.UTC(),
		ExchangeID: hookgate.NewUUID(),
		EventID:    in.eventID,
		Direction:  hookgate.Inbound,
		Event:      in.event,
		HTTPMethod: ownMethod(c.Method()),
		Status:     uint16(in.status),
		Outcome:    in.outcome,
		Attempt:    1,
		DurationMS: float32(d.Seconds() * 1000),
		RemoteAddr: c.IP(),
	}
	if in.method != "" {
		x.HTTPMethod, x.URL = ownMethod(in.method), g.redactPath(in.path, in)
	} else {
		x.URL = g.redactURL(c, in)
	}
	if in.src != nil {
		x.Source, x.Provider = in.src.cfg.ID, in.src.cfg.Provider
	}
	if in.err != nil {
		x.Error = hookgate.ErrorCode(in.err)
	}
	hdrs := in.headers(g, c)
	n := 0
	for _, f := range hdrs {
		n += len(f.name) + len(f.value) + 3
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range hdrs {
		b.WriteString(f.name)
		b.WriteString(": ")
		b.WriteString(f.value)
		b.WriteByte('\n')
	}
	x.RequestHeaders = b.String()
	// Whole: the history writer truncates (history.max_body_bytes), once.
	x.RequestBody = in.redactedBody(g, c)
	x.ResponseBody = string(c.Response().Body())
	return x
}

// ownMethod returns a method name the caller may keep: Fiber's Method
// points into a buffer fasthttp reuses for the next request. The common
// ones are constants, the rest copied.
func ownMethod(m string) string {
	for _, k := range [...]string{fiber.MethodPost, fiber.MethodGet, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete, fiber.MethodHead, fiber.MethodOptions} {
		if m == k {
			return k
		}
	}
	return strings.Clone(m)
}

// redactURL hides the api key path segment and sensitive query values.
func (g *Gateway) redactURL(c *fiber.Ctx, in *inbound) string {
	// Fiber's Path points into a buffer fasthttp reuses for the next
	// request; the row outlives this one.
	path := g.redactPath(strings.Clone(c.Path()), in)
	q := c.Context().QueryArgs()
	if q.Len() == 0 {
		return path
	}
	parts := make([]string, 0, q.Len())
	red := in.redaction(g)
	q.VisitAll(func(k, v []byte) {
		val := url.QueryEscape(string(v)) // decoded: a secret in any percent-encoding shows
		if in.sensitive(string(k)) || red.holds(string(v)) {
			val = hookgate.Redacted // as the event and the body show it
		}
		parts = append(parts, url.QueryEscape(string(k))+"="+val)
	})
	return g.deps.Secrets.Redact(path + "?" + strings.Join(parts, "&"))
}

// redactPath hides the api key path segment and the store's secrets.
func (g *Gateway) redactPath(path string, in *inbound) string {
	if in.keyRoute {
		if i := strings.LastIndex(path, "/webhooks/"); i >= 0 {
			path = path[:i] + "/webhooks/" + hookgate.Redacted
		}
	}
	return g.deps.Secrets.Redact(path)
}

// sensitiveName is hookgate.SensitiveName, remembered.
func sensitiveName(name string) bool { return sensitiveNames.get(name) }

var sensitiveNames = newNameMemo(hookgate.SensitiveName)

// headerNames interns header names: the same few names come with every
// request, and each would otherwise be a new string.
var headerNames = newNameMemo(func(name string) string { return name })

// nameMemo remembers a function of parameter, form key and header names:
// every request asks it for each of them, and the names repeat. The map is
// copied on write and read without locks; it stops growing at
// nameMemoMax names (senders choose names), after which new names are
// simply computed. What it saves per request is measured in
// docs/performance.md ("Hand-written code and what it pays").
type nameMemo[V any] struct {
	f  func(string) V
	m  atomic.Pointer[map[string]V]
	mu sync.Mutex
}

const nameMemoMax = 256

func newNameMemo[V any](f func(string) V) *nameMemo[V] {
	n := &nameMemo[V]{f: f}
	n.m.Store(&map[string]V{})
	return n
}

func (n *nameMemo[V]) get(name string) V {
	m := *n.m.Load()
	if v, ok := m[name]; ok {
		return v
	}
	if len(m) >= nameMemoMax {
		return n.f(name)
	}
	return n.add(strings.Clone(name)) // kept in the map: the caller's may be a reused buffer
}

// getBytes is get for a name held in a buffer that will be reused.
func (n *nameMemo[V]) getBytes(name []byte) V {
	if v, ok := (*n.m.Load())[string(name)]; ok { // no allocation for the lookup
		return v
	}
	return n.add(string(name))
}

// add computes the value of a name the caller owns and remembers it while
// the map is under its bound.
func (n *nameMemo[V]) add(name string) V {
	v := n.f(name)
	if len(*n.m.Load()) >= nameMemoMax {
		return v
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := *n.m.Load()
	if _, ok := cur[name]; !ok && len(cur) < nameMemoMax {
		next := make(map[string]V, len(cur)+1)
		for k, b := range cur {
			next[k] = b
		}
		next[name] = v
		n.m.Store(&next)
	}
	return v
}

// fastHeader adapts fasthttp's request header to Header.
type fastHeader struct{ h *fasthttp.RequestHeader }

func (f fastHeader) Get(name string) string { return string(f.h.Peek(name)) }

func (f fastHeader) Each(fn func(name, value string)) {
	f.h.VisitAll(func(k, v []byte) { fn(string(k), string(v)) })
}

func queryValues(args *fasthttp.Args) url.Values {
	if args.Len() == 0 {
		return url.Values{}
	}
	v := make(url.Values, args.Len())
	args.VisitAll(func(k, val []byte) { v.Add(string(k), string(val)) })
	return v
}

// appendJSONObject appends fields as a JSON object of strings; fields are
// sorted by name, as encoding/json sorts map keys.
func appendJSONObject(b []byte, fs []field) []byte {
	b = append(b, '{')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.name)
		b = append(b, ':')
		b = appendJSONString(b, f.value)
	}
	return append(b, '}')
}

// appendRawJSON appends raw JSON as encoding/json writes a json.RawMessage:
// compacted, with <, >, &, U+2028 and U+2029 escaped, and an error when it
// is not valid JSON.
func appendRawJSON(b, raw []byte) ([]byte, error) {
	if !needsCompact(raw) {
		if !json.Valid(raw) {
			return b, errors.New("gateway: event json is not valid JSON")
		}
		return append(b, raw...), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return b, err
	}
	var esc bytes.Buffer
	json.HTMLEscape(&esc, buf.Bytes())
	return append(b, esc.Bytes()...), nil
}

// needsCompact reports whether compacting and HTML-escaping raw could
// change it: white space outside strings, or a character encoding/json
// escapes. Invalid JSON may pass; the caller validates.
func needsCompact(raw []byte) bool {
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case c == '<' || c == '>' || c == '&' || c == 0xE2:
			return true
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return true
		}
	}
	return false
}

// appendJSONString appends s as encoding/json's json.Marshal writes a
// string (HTML characters escaped).
func appendJSONString(dst []byte, s string) []byte { return hookgate.AppendJSONString(dst, s, true) }
