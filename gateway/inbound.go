package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate"
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
}

func (g *Gateway) handleSource(c *fiber.Ctx) error {
	in := &inbound{start: time.Now()}
	t := g.table.Load()
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
	in := &inbound{start: time.Now(), keyRoute: true}
	err := g.checkMethod(c)
	var key string
	if err == nil {
		key = c.Params("key")
		in.src, err = g.lookupKey(c.UserContext(), g.table.Load(), key)
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

// lookupKey finds the KeyRouted source whose secret is key, comparing in
// constant time with every candidate. A source whose secret cannot be read
// makes an unmatched key a 503, not a 404: it might have been that one.
func (g *Gateway) lookupKey(ctx context.Context, t *sourceTable, key string) (*source, error) {
	var found *source
	var unavailable error
	for _, s := range t.byKey {
		vals, err := g.deps.Secrets.Secrets(ctx, s.cfg.Secret)
		if err != nil {
			unavailable = err
			continue
		}
		for _, v := range vals {
			if subtle.ConstantTimeCompare([]byte(v.Reveal()), []byte(key)) == 1 && found == nil {
				found = s
			}
		}
	}
	switch {
	case found != nil:
		return found, nil
	case unavailable != nil && hookgate.ErrorCode(unavailable) == hookgate.EUnavailable:
		return nil, unavailable
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
	if s.limiter != nil && !s.limiter.Allow() {
		return hookgate.Errorf(hookgate.ERateLimited, "source rate limit")
	}
	req := &Request{
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
	ctx := c.UserContext()
	ref := s.cfg.Secret
	secrets := func(ctx context.Context) ([]hookgate.Secret, error) {
		return g.deps.Secrets.Secrets(ctx, ref)
	}
	if err := s.provider.Verify(ctx, req, msg, secrets); err != nil {
		return asCode(err, hookgate.EInvalidToken)
	}
	in.event = msg.Event
	if msg.DedupKey != "" {
		in.eventID = hookgate.EventID(s.cfg.ID, msg.DedupKey)
	} else {
		in.eventID = hookgate.NewUUID()
	}
	data, err := json.Marshal(g.envelope(req, msg, in))
	if err != nil {
		return hookgate.WrapError(hookgate.EInternal, "encode event", err)
	}
	pctx, cancel := context.WithTimeout(ctx, g.deps.PublishTimeout)
	defer cancel()
	dup, err := g.deps.Bus.Publish(pctx, hookgate.InboundSubject(s.cfg.ID, msg.Event), in.eventID, data)
	if err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "the event bus cannot store the event", err)
	}
	if dup {
		in.outcome = hookgate.OutcomeDuplicate
		return nil
	}
	in.outcome = hookgate.OutcomeAccepted
	return nil
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

// envelope builds the CloudEvent, with every credential redacted.
func (g *Gateway) envelope(req *Request, msg *Message, in *inbound) *hookgate.Event {
	redact := g.deps.Secrets.Redact
	params := make(map[string]string, len(msg.Params))
	for k, v := range msg.Params {
		if g.sensitiveParam(k, in.src, msg) {
			params[k] = hookgate.Redacted
		} else {
			params[k] = redact(v)
		}
	}
	ev := &hookgate.Event{
		SpecVersion:     "1.0",
		ID:              in.eventID,
		Source:          "hookgate/" + in.src.cfg.ID,
		Type:            msg.Event,
		Time:            req.Now.UTC(),
		DataContentType: "application/json",
		Data: hookgate.EventData{
			WebhookID:   in.src.cfg.ID,
			Provider:    in.src.cfg.Provider,
			Event:       msg.Event,
			Params:      params,
			Body:        g.redactBody(string(req.Body), msg, in.src),
			ContentType: req.ContentType,
			Headers:     g.headers(req.Header),
		},
	}
	if len(msg.JSON) > 0 {
		ev.Data.JSON = json.RawMessage(redact(string(msg.JSON)))
	}
	return ev
}

func (g *Gateway) sensitiveParam(name string, s *source, msg *Message) bool {
	if hookgate.SensitiveName(name) || (s.cfg.AuthParameter != "" && name == s.cfg.AuthParameter) {
		return true
	}
	for _, r := range msg.Redact {
		if r == name {
			return true
		}
	}
	return false
}

// redactBody removes secret values and the values of sensitive parameters
// (which may not be secrets the store knows, e.g. a refresh token).
func (g *Gateway) redactBody(body string, msg *Message, s *source) string {
	body = g.deps.Secrets.Redact(body)
	for k, v := range msg.Params {
		if v == "" || v == hookgate.Redacted || !g.sensitiveParam(k, s, msg) {
			continue
		}
		body = strings.ReplaceAll(body, url.QueryEscape(v), hookgate.Redacted)
		body = strings.ReplaceAll(body, v, hookgate.Redacted)
	}
	return body
}

// headers returns the request headers, credentials redacted.
func (g *Gateway) headers(h Header) map[string]string {
	out := map[string]string{}
	h.Each(func(name, value string) {
		if hookgate.SensitiveName(name) {
			value = hookgate.Redacted
		} else {
			value = g.deps.Secrets.Redact(value)
		}
		out[name] = value
	})
	return out
}

// finish answers the request and records it.
func (g *Gateway) finish(c *fiber.Ctx, in *inbound, err error) error {
	if err != nil {
		in.outcome = hookgate.OutcomeRejected
		in.err = err
		if hookgate.ErrorCode(err) == hookgate.EInternal || hookgate.ErrorCode(err) == hookgate.EUnavailable {
			g.log.Warn("inbound request failed", "source", in.sourceID(), "code", hookgate.ErrorCode(err), "err", g.deps.Secrets.Redact(err.Error()))
		}
		_ = writeError(c, err)
	} else {
		_ = c.JSON(fiber.Map{"status": in.outcome, "id": in.eventID})
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
		g.deps.Recorder.Record(g.row(c, in, d))
	}
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
		HTTPMethod: c.Method(),
		URL:        g.redactURL(c, in),
		Status:     uint16(in.status),
		Outcome:    in.outcome,
		Attempt:    1,
		DurationMS: float32(d.Seconds() * 1000),
		RemoteAddr: c.IP(),
	}
	if in.src != nil {
		x.Source, x.Provider = in.src.cfg.ID, in.src.cfg.Provider
	}
	if in.err != nil {
		x.Error = hookgate.ErrorCode(in.err)
	}
	hdr := g.headers(fastHeader{&c.Request().Header})
	names := make([]string, 0, len(hdr))
	for k := range hdr {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + ": " + hdr[k] + "\n")
	}
	x.RequestHeaders = b.String()
	body := string(c.Request().Body())
	body = g.deps.Secrets.Redact(body)
	body = redactFormCredentials(body)
	x.RequestBody = hookgate.Truncate(body, g.deps.HistoryBodyBytes)
	x.ResponseBody = hookgate.Truncate(string(c.Response().Body()), g.deps.HistoryBodyBytes)
	return x
}

// redactURL hides the api key path segment and sensitive query values.
func (g *Gateway) redactURL(c *fiber.Ctx, in *inbound) string {
	path := c.Path()
	if in.keyRoute {
		if i := strings.LastIndex(path, "/webhooks/"); i >= 0 {
			path = path[:i] + "/webhooks/" + hookgate.Redacted
		}
	}
	q := c.Context().QueryArgs()
	if q.Len() == 0 {
		return g.deps.Secrets.Redact(path)
	}
	parts := make([]string, 0, q.Len())
	q.VisitAll(func(k, v []byte) {
		val := string(v)
		if hookgate.SensitiveName(string(k)) || (in.src != nil && string(k) == in.src.cfg.AuthParameter) {
			val = hookgate.Redacted
		}
		parts = append(parts, url.QueryEscape(string(k))+"="+url.QueryEscape(val))
	})
	return g.deps.Secrets.Redact(path + "?" + strings.Join(parts, "&"))
}

// redactFormCredentials hides the values of sensitive keys in a urlencoded
// body, whether or not they were the right secret (a rejected request's
// wrong token is still a credential).
func redactFormCredentials(body string) string {
	if !strings.Contains(body, "=") || strings.HasPrefix(strings.TrimSpace(body), "{") {
		return body
	}
	parts := strings.Split(body, "&")
	changed := false
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if hookgate.SensitiveName(name) {
			parts[i] = k + "=" + url.QueryEscape(hookgate.Redacted)
			changed = true
		}
	}
	if !changed {
		return body
	}
	return strings.Join(parts, "&")
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
