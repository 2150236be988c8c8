// Package delivery posts events to the platform's HTTP endpoints, signed
// per Standard Webhooks (webhook-id, webhook-timestamp,
// webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">), and
// records one history row per attempt.
//
// A Deliver call is one attempt: retries belong to the durable job that
// calls it (package jobs), which keeps the webhook-id stable across them.
// Any 2xx is success; 410 Gone is ErrGone (the route should stop
// delivering); every other answer or transport failure is a *StatusError
// or a transport error worth retrying, with the answer's Retry-After when
// it carried one. Redirects are not followed: a signed POST is not replayed
// to another URL.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/standard"
	"github.com/hookgate/hookgate/telemetry"
)

// Defaults of a Client.
const (
	DefaultTimeout   = 30 * time.Second
	maxResponseBytes = 1 << 20 // read from an answer
)

// Standard Webhooks header names (those of package standard, which signs).
const (
	HeaderID        = standard.HeaderID
	HeaderTimestamp = standard.HeaderTimestamp
	HeaderSignature = standard.HeaderSignature
)

// ErrGone is matched (errors.Is) by the error of a 410 answer: the
// endpoint is gone and the route should stop delivering to it.
var ErrGone = errors.New("delivery: endpoint gone")

// StatusError is a non-2xx answer.
type StatusError struct {
	Status int
	// RetryAfter is the answer's Retry-After (seconds or an HTTP date),
	// 0 when absent.
	RetryAfter time.Duration
	Body       string // the start of the answer's body
}

func (e *StatusError) Error() string {
	s := "delivery: http " + strconv.Itoa(e.Status)
	if e.Status == http.StatusGone {
		s += " (endpoint gone)"
	}
	if e.RetryAfter > 0 {
		s += " (retry after " + e.RetryAfter.String() + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrGone) hold for a 410.
func (e *StatusError) Is(target error) bool { return target == ErrGone && e.Status == http.StatusGone }

// RetryAfter returns the Retry-After carried by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter, true
	}
	return 0, false
}

// Response is a 2xx answer.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte // up to 1 MiB
	Duration time.Duration
}

// Meta describes an attempt for its history row.
type Meta struct {
	Source  string // the route name
	Event   string // the event name
	EventID string
	Attempt int // 1-based
	// Last says no attempt follows a failure: its row says "dead".
	Last bool
	// Timeout overrides the client's timeout for this attempt.
	Timeout time.Duration
	// Covers lists the other events a coalesced delivery stands for:
	// each gets its own copy of the attempt's history row.
	Covers []string
}

type ctxKey int

const metaKey ctxKey = iota

// WithMeta returns ctx carrying m for the attempts made with it.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey, m)
}

func metaOf(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey).(Meta)
	if m.Attempt <= 0 {
		m.Attempt = 1
	}
	return m
}

// Option configures a Client.
type Option func(*Client)

// WithRecorder records one history row per attempt.
func WithRecorder(r hookgate.Recorder) Option { return func(c *Client) { c.rec = r } }

// WithClock sets the clock of webhook-timestamp and Retry-After dates.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithTimeout sets the timeout of one attempt (default 30 s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithHTTPClient sets the underlying *http.Client.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// Client delivers signed events. It is safe for concurrent use.
type Client struct {
	http    *resty.Client
	hc      *http.Client
	rec     hookgate.Recorder
	now     func() time.Time
	timeout time.Duration
	log     *slog.Logger
}

// New returns a Client.
func New(opts ...Option) *Client {
	c := &Client{now: time.Now, timeout: DefaultTimeout, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	hc := &http.Client{}
	if c.hc != nil {
		cp := *c.hc
		hc = &cp
	}
	// A redirect is an answer like any other non-2xx, not followed.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = resty.NewWithClient(hc).
		SetLogger(quietLogger{}).
		SetRetryCount(0).
		SetHeader("User-Agent", "hookgate/"+hookgate.Version)
	return c
}

// Deliver makes one attempt to POST body to url, signed with secret, with
// webhook-id id (stable across the attempts of one delivery). Attempt
// details for history come from WithMeta. A 2xx answer returns its
// Response; a 410 an error matching ErrGone; other answers a *StatusError.
func (c *Client) Deliver(ctx context.Context, rawURL string, secret hookgate.Secret, id string, body []byte) (*Response, error) {
	meta := metaOf(ctx)
	start := c.now()
	ts := start
	sig, err := standard.Sign(secret, id, ts, body)
	if err != nil {
		return nil, err
	}
	timeout := c.timeout
	if meta.Timeout > 0 {
		timeout = meta.Timeout
	}
	ctx, span := startSpan(ctx, rawURL, id, meta)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	headers := map[string]string{
		"Content-Type":  "application/json",
		HeaderID:        id,
		HeaderTimestamp: standard.Timestamp(ts),
		HeaderSignature: sig,
	}
	for k, v := range telemetry.Headers(ctx) { // traceparent, when tracing
		headers[k] = v
	}
	row := hookgate.Exchange{
		TS:          start.UTC(),
		ExchangeID:  hookgate.NewUUID(),
		EventID:     meta.EventID,
		Direction:   hookgate.Outbound,
		Source:      meta.Source,
		Provider:    "http",
		Event:       meta.Event,
		Operation:   "deliver",
		HTTPMethod:  http.MethodPost,
		URL:         redactURL(rawURL),
		Attempt:     uint16(min(meta.Attempt, 65535)),
		RequestBody: string(body), // whole: the history writer truncates, once
		TraceID:     telemetry.TraceID(ctx),
	}
	row.RequestHeaders = headerJSON(headers)

	t0 := time.Now()
	resp, err := c.http.R().
		SetContext(actx).
		SetHeaders(headers).
		SetBody(body).
		SetDoNotParseResponse(true).
		Post(rawURL)
	var status int
	var respBody []byte
	var respHeader http.Header
	if err == nil {
		status = resp.StatusCode()
		respHeader = resp.Header()
		if raw := resp.RawBody(); raw != nil {
			respBody, _ = io.ReadAll(io.LimitReader(raw, maxResponseBytes))
			_, _ = io.Copy(io.Discard, io.LimitReader(raw, 64<<10))
			raw.Close()
		}
	}
	took := time.Since(t0)
	row.DurationMS = float32(took.Seconds() * 1000)
	row.Status = uint16(status)
	row.ResponseBody = string(respBody)

	var out error
	switch {
	case err != nil:
		out = fmt.Errorf("delivery: post %s: %w", row.URL, stripURL(err))
		row.Error = transportCode(ctx, actx, err)
	case status >= 200 && status < 300:
	default:
		se := &StatusError{Status: status, Body: hookgate.Truncate(string(respBody), 512)}
		if status != http.StatusGone {
			se.RetryAfter = parseRetryAfter(respHeader.Get("Retry-After"), c.now())
		}
		out = se
		row.Error = "http_" + strconv.Itoa(status)
		if status == http.StatusGone {
			row.Error = "gone"
		}
	}
	switch {
	case out == nil:
		row.Outcome = hookgate.OutcomeOK
	case errors.Is(out, ErrGone):
		row.Outcome = hookgate.OutcomeFailed
	case meta.Last:
		row.Outcome = hookgate.OutcomeDead
	default:
		row.Outcome = hookgate.OutcomeRetry
	}
	if c.rec != nil {
		c.rec.Record(row)
		for _, ev := range meta.Covers {
			cp := row
			cp.ExchangeID, cp.EventID = hookgate.NewUUID(), ev
			c.rec.Record(cp)
		}
	}
	endSpan(span, &row)
	if out != nil {
		c.log.DebugContext(ctx, "delivery attempt failed", "url", row.URL, "id", id, "attempt", meta.Attempt, "err", out)
		return nil, out
	}
	return &Response{Status: status, Header: respHeader, Body: respBody, Duration: took}, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(n)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func transportCode(parent, actx context.Context, err error) string {
	switch {
	case errors.Is(err, context.Canceled) || parent.Err() != nil:
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded) || actx.Err() != nil:
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "network" // the one code for a failure below HTTP, as outbound.ErrorCode
}

// stripURL removes the request URL from a *url.Error (it may carry
// credentials); the caller names the redacted URL itself.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL hides userinfo passwords and query values with sensitive
// names.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return hookgate.Redacted
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), hookgate.Redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if hookgate.SensitiveName(k) {
				q[k] = []string{hookgate.Redacted}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	s := u.String()
	return strings.ReplaceAll(s, url.QueryEscape(hookgate.Redacted), hookgate.Redacted)
}

// headerJSON renders request headers for history with the signature
// redacted.
func headerJSON(h map[string]string) string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if k == HeaderSignature || hookgate.SensitiveName(k) {
			v = hookgate.Redacted
		}
		out[k] = v
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(out)
	return strings.TrimSpace(b.String())
}

type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
