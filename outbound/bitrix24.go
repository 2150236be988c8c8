// Package outbound calls systems outside the gateway. Bitrix24 is the
// Bitrix24 REST client: webhook URL with the secret read at call time,
// Bitrix24 parameter encoding, both answer envelopes, a per-portal leaky
// bucket, operating-limit holds, a circuit breaker, in-call retries with
// backoff, list paging, batch, and one history row per HTTP attempt.
package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/telemetry"
)

// Defaults for a portal's protection.
const (
	DefaultPerSecond      = 2.0              // leaky bucket drain (standard plans)
	DefaultBurst          = 50               // leaky bucket capacity
	DefaultTimeout        = 30 * time.Second // per HTTP attempt
	DefaultRetries        = 3                // in-call retries after the first attempt
	DefaultMaxRetryWait   = time.Minute      // longer waits are left to durable jobs
	DefaultRateGuard      = time.Second
	DefaultOperatingLimit = 480 * time.Second // per method per 10 minutes
	DefaultBreakerTrip    = 5                 // consecutive transient failures
	DefaultBreakerOpen    = 30 * time.Second
)

// SecretFunc returns the portal's webhook secret (the <secret> segment of
// /rest/<user>/<secret>/). It is called for every attempt, so a rotated
// secret is used as soon as the store returns it.
type SecretFunc func(ctx context.Context) (hookgate.Secret, error)

// Clock is the time source for retry waits and operating-limit holds.
type Clock interface {
	Now() time.Time
	// After waits for d like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Attempt describes one attempt for an Observer.
type Attempt struct {
	Portal   string
	Method   string
	Outcome  string // hookgate.OutcomeOK, OutcomeRetry or OutcomeFailed
	Status   int    // 0 when no answer
	Error    string // error code, "" on success
	Duration time.Duration
}

// Observer receives what metrics need: every attempt, and every change of
// a portal's breaker state ("closed", "half-open", "open"). Its methods
// are called on the request path and must not block.
type Observer interface {
	ObserveAttempt(Attempt)
	ObserveBreaker(portal, from, to string)
}

// ObserverFuncs adapts functions to an Observer; nil fields are skipped.
type ObserverFuncs struct {
	Attempt func(Attempt)
	Breaker func(portal, from, to string)
}

// ObserveAttempt implements Observer.
func (o ObserverFuncs) ObserveAttempt(a Attempt) {
	if o.Attempt != nil {
		o.Attempt(a)
	}
}

// ObserveBreaker implements Observer.
func (o ObserverFuncs) ObserveBreaker(portal, from, to string) {
	if o.Breaker != nil {
		o.Breaker(portal, from, to)
	}
}

// Option configures a Bitrix24 client.
type Option func(*options)

type options struct {
	recorder       hookgate.Recorder
	clock          Clock
	logger         *slog.Logger
	observer       Observer
	httpClient     *http.Client
	transport      http.RoundTripper
	retries        *int
	maxRetryWait   time.Duration
	rateGuard      time.Duration
	operatingLimit time.Duration
	breakerTrip    uint32
	breakerOpen    time.Duration
}

// WithRecorder records one history row per attempt.
func WithRecorder(r hookgate.Recorder) Option { return func(o *options) { o.recorder = r } }

// WithClock sets the clock of retry waits and operating holds.
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithObserver reports attempts and breaker changes, e.g. to metrics.
func WithObserver(obs Observer) Option { return func(o *options) { o.observer = obs } }

// WithHTTPClient sets the underlying *http.Client.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithTransport sets the underlying transport.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithRetries sets the in-call retries after the first attempt, overriding
// the portal's retries; 0 makes one attempt only.
func WithRetries(n int) Option {
	return func(o *options) {
		n = max(n, 0)
		o.retries = &n
	}
}

// WithMaxRetryWait sets the longest wait an in-call retry may take; when
// the backoff (or an operating-limit reset) is further away the error is
// returned at once, for a durable job to retry later.
func WithMaxRetryWait(d time.Duration) Option { return func(o *options) { o.maxRetryWait = d } }

// WithRateGuard sets the headroom kept in the portal's bucket for network
// jitter: requests that leave at the rate limit may arrive closer together
// than they left. Default 1 s of drain (two requests at 2/s): 48 of a
// burst of 50 leave at once, the 49th half a second later. Half a second
// was measured too little on a loaded 2-core machine: one
// QUERY_LIMIT_EXCEEDED in 91 requests (TestCallThroughGateway).
func WithRateGuard(d time.Duration) Option { return func(o *options) { o.rateGuard = max(d, 0) } }

// WithOperatingLimit sets the portal's per-method operating limit (default
// 480 s per 10 min): when an answer's time.operating reaches 95 % of it,
// further calls to that method wait for time.operating_reset_at.
func WithOperatingLimit(d time.Duration) Option { return func(o *options) { o.operatingLimit = d } }

// WithBreaker sets the breaker: it opens after trip consecutive transient
// failures and stays open for openFor before letting one probe through.
func WithBreaker(trip uint32, openFor time.Duration) Option {
	return func(o *options) { o.breakerTrip, o.breakerOpen = trip, openFor }
}

// Bitrix24 is the REST client of one portal. It is safe for concurrent
// use; use one per portal so that the bucket and breaker are shared.
type Bitrix24 struct {
	portal   string
	base     string // <base_url>/rest/<user_id>/
	secret   SecretFunc
	http     *resty.Client
	timeout  time.Duration
	retries  int
	drain    float64
	limiter  *rate.Limiter
	unit     int
	breaker  *gobreaker.CircuitBreaker[*Result]
	opts     options
	redactor atomic.Pointer[secretRedactor]

	mu    sync.Mutex
	holds map[string]time.Time // method → held until (operating limit)
}

type secretRedactor struct {
	secret string
	r      *hookgate.Redactor
}

// NewBitrix24 returns the client of portal p. secret is read for every
// attempt.
func NewBitrix24(p config.Portal, secret SecretFunc, opts ...Option) (*Bitrix24, error) {
	if secret == nil {
		return nil, errors.New("outbound: nil secret func")
	}
	u, err := url.Parse(p.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("portal %q: bad base_url %q", p.ID, p.BaseURL)
	}
	if p.UserID <= 0 {
		return nil, fmt.Errorf("portal %q: user_id must be positive", p.ID)
	}
	o := options{
		clock:          realClock{},
		logger:         slog.New(slog.DiscardHandler),
		maxRetryWait:   DefaultMaxRetryWait,
		rateGuard:      DefaultRateGuard,
		operatingLimit: DefaultOperatingLimit,
		breakerTrip:    DefaultBreakerTrip,
		breakerOpen:    DefaultBreakerOpen,
	}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Bitrix24{
		portal:  p.ID,
		base:    strings.TrimRight(p.BaseURL, "/") + "/rest/" + strconv.Itoa(p.UserID) + "/",
		secret:  secret,
		timeout: p.Timeout.D(),
		retries: p.Retries,
		opts:    o,
		holds:   map[string]time.Time{},
	}
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	if b.retries <= 0 {
		b.retries = DefaultRetries
	}
	if o.retries != nil {
		b.retries = *o.retries
	}

	hc := o.httpClient
	if hc == nil {
		hc = &http.Client{}
	}
	b.http = resty.NewWithClient(hc).
		SetLogger(quietLogger{}).
		SetRetryCount(0).
		SetHeader("Accept", "application/json").
		SetHeader("User-Agent", "hookgate/"+hookgate.Version)
	if o.transport != nil {
		b.http.SetTransport(o.transport)
	}

	b.limiter, b.unit, b.drain = newLimiter(p.Rate, o.rateGuard)

	b.breaker = gobreaker.NewCircuitBreaker[*Result](gobreaker.Settings{
		Name:        p.ID,
		MaxRequests: 1,
		Timeout:     o.breakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= max(o.breakerTrip, 1) },
		IsSuccessful: func(err error) bool {
			// the portal's limits say "slow down", not "down"
			return err == nil || !IsTransient(err) || isCode(err, CodeOperationTimeLimit) || isCode(err, CodeQueryLimitExceeded)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			b.opts.logger.Warn("bitrix24 breaker", "portal", name, "from", from.String(), "to", to.String())
			if b.opts.observer != nil {
				b.opts.observer.ObserveBreaker(name, from.String(), to.String())
			}
		},
	})
	return b, nil
}

// newLimiter builds the client-side bucket. Its unit is 1/100 request so
// that the jitter headroom (guard × rate) can be a fraction of a request.
func newLimiter(r *config.Rate, guard time.Duration) (*rate.Limiter, int, float64) {
	per, burst := DefaultPerSecond, DefaultBurst
	if r != nil {
		if r.PerSecond != 0 {
			per = r.PerSecond
		}
		if r.Burst > 0 {
			burst = r.Burst
		}
	}
	if per < 0 || math.IsInf(per, 1) {
		return rate.NewLimiter(rate.Inf, 0), 1, 0
	}
	const unit = 100
	head := int(math.Ceil(guard.Seconds() * per * unit))
	head = min(head, (burst-1)*unit)
	return rate.NewLimiter(rate.Limit(per*unit), burst*unit-head), unit, per
}

// Portal returns the portal id.
func (b *Bitrix24) Portal() string { return b.portal }

// BreakerState returns "closed", "half-open" or "open".
func (b *Bitrix24) BreakerState() string { return b.breaker.State().String() }

// Time is the "time" block of an answer.
type Time struct {
	Start            float64 `json:"start"`
	Finish           float64 `json:"finish"`
	Duration         float64 `json:"duration"`
	Processing       float64 `json:"processing"`
	DateStart        string  `json:"date_start"`
	DateFinish       string  `json:"date_finish"`
	Operating        float64 `json:"operating"`          // seconds used by this method in the window
	OperatingResetAt float64 `json:"operating_reset_at"` // unix seconds
}

// ResetAt returns operating_reset_at as a time (zero when absent).
func (t *Time) ResetAt() time.Time {
	if t == nil || t.OperatingResetAt == 0 {
		return time.Time{}
	}
	sec, frac := math.Modf(t.OperatingResetAt)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// resetIn is how long until operating_reset_at by the portal's own clock
// (reset_at − finish), so that clock skew does not matter; ok is false
// when the block has no reset time.
func (t *Time) resetIn() (time.Duration, bool) {
	if t == nil || t.OperatingResetAt == 0 {
		return 0, false
	}
	now := t.Finish
	if now == 0 {
		now = t.Start
	}
	if now == 0 {
		return 0, false
	}
	return time.Duration((t.OperatingResetAt - now) * float64(time.Second)), true
}

// resetWait is how long to hold a method the block says is at its
// operating limit: until operating_reset_at, plus 1 s.
func (t *Time) resetWait() (time.Duration, bool) {
	in, ok := t.resetIn()
	return max(in, 0) + time.Second, ok
}

// Result is a successful answer.
type Result struct {
	Result json.RawMessage // the "result" member
	Next   *int            // list methods: start of the next page, nil on the last
	Total  *int            // list methods: rows in all pages (0 with start=-1)
	Time   Time
	// Attempts is how many HTTP attempts the call took.
	Attempts int
}

// Decode unmarshals the result member into v.
func (r *Result) Decode(v any) error { return json.Unmarshal(r.Result, v) }

type envelope struct {
	Result      json.RawMessage `json:"result"`
	Next        *int            `json:"next"`
	Total       *int            `json:"total"`
	Time        *Time           `json:"time"`
	Error       *string         `json:"error"`
	Description string          `json:"error_description"`
}

type ctxKey int

const (
	eventIDKey ctxKey = iota
	attemptKey
)

// WithEventID returns ctx carrying the event a call belongs to; its rows
// in history get that event_id.
func WithEventID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, eventIDKey, id)
}

// WithAttempt returns ctx carrying the attempt number of the call's first
// HTTP attempt (1-based; in-call retries count on from it). A durable job
// passes the attempts already made plus one so rows keep counting.
func WithAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey, n)
}

// EventID returns the event id carried by ctx, or "".
func EventID(ctx context.Context) string {
	s, _ := ctx.Value(eventIDKey).(string)
	return s
}

func firstAttempt(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey).(int); ok && n > 0 {
		return n
	}
	return 1
}

// Call calls a REST method with params (encoded by EncodeParams) as an
// urlencoded POST. Transient failures are retried within the call (see
// IsTransient); an error answer is an *APIError.
func (b *Bitrix24) Call(ctx context.Context, method string, params map[string]any) (*Result, error) {
	if err := checkMethod(method); err != nil {
		return nil, err
	}
	body, err := EncodeParams(params)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	if c := addCheck(method, params); c != nil && !idempotent(ctx) {
		return b.checkedAdd(ctx, method, body, c) // writes.go
	}
	return b.call(ctx, method, body)
}

func (b *Bitrix24) call(ctx context.Context, method, body string) (*Result, error) {
	first := firstAttempt(ctx)
	var prev trace.SpanContext // the attempt before, for the next one's span link
	for i := 0; ; i++ {
		actx, span := b.startAttempt(ctx, method, first+i, prev)
		a := b.attempt(actx, method, body)
		a.row.Attempt = uint16(min(first+i, math.MaxUint16))
		if a.err != nil && !certainlyNotRun(a) && isWriteCall(ctx, method) && !idempotent(ctx) {
			a.err = &AmbiguousWriteError{Method: method, Cause: a.err} // writes.go
			a.row.Error = CodeAmbiguousWrite
		}

		retry := false
		var wait time.Duration
		if a.err != nil && i < b.retries && IsTransient(a.err) && !errors.Is(a.err, ErrCircuitOpen) {
			var secErr *secretError
			if !errors.As(a.err, &secErr) {
				wait = b.retryWait(i, a.err)
				retry = b.canWait(ctx, wait)
			}
		}
		switch {
		case a.err == nil:
			a.row.Outcome = hookgate.OutcomeOK
		case retry:
			a.row.Outcome = hookgate.OutcomeRetry
		default:
			a.row.Outcome = hookgate.OutcomeFailed
		}
		b.finish(a)
		endAttempt(span, &a)
		prev = span.SpanContext()
		if a.err == nil {
			a.res.Attempts = i + 1
			return a.res, nil
		}
		if !retry {
			return nil, fmt.Errorf("call %s: %w", method, a.err)
		}
		b.opts.logger.InfoContext(actx, "bitrix24 retry", "portal", b.portal, "method", method,
			"attempt", a.row.Attempt, "error", a.row.Error, "wait", wait)
		select {
		case <-b.opts.clock.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("call %s: %w; %w", method, a.err, ctx.Err())
		}
	}
}

// canWait reports whether a retry after wait fits the limits and ctx.
func (b *Bitrix24) canWait(ctx context.Context, wait time.Duration) bool {
	if wait > b.opts.maxRetryWait {
		return false
	}
	if dl, ok := ctx.Deadline(); ok && b.opts.clock.Now().Add(wait).After(dl) {
		return false
	}
	return ctx.Err() == nil
}

// retryWait is the backoff before retry i+1 (i is 0-based), after the JS
// SDK: QUERY_LIMIT_EXCEEDED (1000/drain + 1000) ms × 1.5^i; OPERATION_TIME_
// LIMIT until operating_reset_at + 1 s (10 s when unknown); otherwise 1 s ×
// 2^i capped at 30 s; ±10 % jitter; never shorter than Retry-After.
func (b *Bitrix24) retryWait(i int, err error) time.Duration {
	var d time.Duration
	var ae *APIError
	isAPI := errors.As(err, &ae)
	switch {
	case isAPI && ae.Code == CodeQueryLimitExceeded:
		base := 1000.0
		if b.drain > 0 {
			base += 1000 / b.drain
		}
		d = jitter(time.Duration(base * math.Pow(1.5, float64(i)) * float64(time.Millisecond)))
	case isAPI && ae.Code == CodeOperationTimeLimit:
		// RetryDelay below
	default:
		d = min(time.Second<<min(i, 5), 30*time.Second)
		d = min(jitter(d), 33*time.Second)
	}
	if rd, ok := RetryDelay(err); ok && rd > d {
		d = rd
	}
	return d
}

// RetryDelay is how long to wait before calling again after err, when the
// answer says: after OPERATION_TIME_LIMIT until operating_reset_at plus
// 1 s, measured on the portal's own clock (10 s when the answer has no
// reset time); never shorter than the answer's Retry-After. ok is false
// when err is not such an answer. The client's retries, its per-method
// holds and the routes' job retries all wait this long.
func RetryDelay(err error) (d time.Duration, ok bool) {
	var ae *APIError
	if !errors.As(err, &ae) {
		return 0, false
	}
	if ae.Code == CodeOperationTimeLimit {
		d, ok = 10*time.Second, true
		if w, known := ae.Time.resetWait(); known {
			d = w
		}
	}
	if ae.RetryAfter > d {
		d, ok = ae.RetryAfter, true
	}
	return d, ok
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

type attemptResult struct {
	res  *Result
	err  error
	row  hookgate.Exchange
	sent bool
}

// attempt makes one HTTP attempt: secret, operating hold, bucket, breaker,
// request, parse. It fills the history row except outcome and attempt.
func (b *Bitrix24) attempt(ctx context.Context, method, body string) (a attemptResult) {
	redURL := b.base + hookgate.Redacted + "/" + method + ".json"
	a.row = hookgate.Exchange{
		ExchangeID: hookgate.NewUUID(),
		EventID:    EventID(ctx),
		Direction:  hookgate.Outbound,
		Source:     b.portal,
		TraceID:    telemetry.TraceID(ctx),
		Provider:   "bitrix24",
		Operation:  method,
		HTTPMethod: http.MethodPost,
		URL:        redURL,
	}
	start := b.opts.clock.Now()
	fail := func(err error) attemptResult {
		a.err = err
		a.row.TS = start.UTC()
		a.row.Error = errorCode(err)
		return a
	}

	secret, err := b.secret(ctx)
	if err != nil {
		return fail(&secretError{err: err})
	}
	red := b.redactorFor(secret.Reveal())
	a.row.RequestBody = red.Redact(body) // whole: the history writer truncates, once

	if err := b.waitHold(ctx, method); err != nil {
		return fail(err)
	}
	if err := b.limiter.WaitN(ctx, b.unit); err != nil {
		if ctx.Err() == nil { // the token comes after ctx's deadline
			err = context.DeadlineExceeded
		}
		return fail(fmt.Errorf("rate limit wait: %w", err))
	}

	start = b.opts.clock.Now()
	realStart := time.Now()
	var status int
	var respBody []byte
	res, err := b.breaker.Execute(func() (*Result, error) {
		a.sent = true
		actx, cancel := context.WithTimeout(ctx, b.timeout)
		defer cancel()
		resp, err := b.http.R().
			SetContext(actx).
			SetHeader("Content-Type", "application/x-www-form-urlencoded").
			SetHeaders(telemetry.Headers(ctx)). // traceparent, when tracing
			SetBody(body).
			Post(b.base + secret.Reveal() + "/" + method + ".json")
		if err != nil {
			return nil, &transportError{url: redURL, err: stripURL(err, red)}
		}
		status = resp.StatusCode()
		respBody = resp.Body()
		return parse(status, resp.Header(), respBody)
	})
	a.row.TS = start.UTC()
	a.row.DurationMS = float32(time.Since(realStart).Seconds() * 1000)
	a.row.Status = uint16(status)
	a.row.ResponseBody = red.Redact(string(respBody))
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		err = ErrCircuitOpen
	}
	if err != nil {
		b.noteOperating(method, err)
		b.noteQueryLimit(err)
		a.err = err
		a.row.Error = errorCode(err)
		return a
	}
	b.noteTime(method, &res.Time)
	a.res = res
	return a
}

// finish records the row and tells the observer.
func (b *Bitrix24) finish(a attemptResult) {
	if b.opts.recorder != nil {
		b.opts.recorder.Record(a.row)
	}
	if b.opts.observer != nil {
		b.opts.observer.ObserveAttempt(Attempt{
			Portal:   b.portal,
			Method:   a.row.Operation,
			Outcome:  a.row.Outcome,
			Status:   int(a.row.Status),
			Error:    a.row.Error,
			Duration: time.Duration(float64(a.row.DurationMS) * float64(time.Millisecond)),
		})
	}
	b.opts.logger.Debug("bitrix24 attempt", "portal", b.portal, "method", a.row.Operation,
		"attempt", a.row.Attempt, "status", a.row.Status, "outcome", a.row.Outcome, "error", a.row.Error)
}

func (b *Bitrix24) redactorFor(secret string) *hookgate.Redactor {
	if r := b.redactor.Load(); r != nil && r.secret == secret {
		return r.r
	}
	r := &secretRedactor{secret: secret, r: hookgate.NewRedactor(secret)}
	b.redactor.Store(r)
	return r.r
}

// stripURL returns the cause of a transport error without the request URL
// (which holds the secret).
func stripURL(err error, red *hookgate.Redactor) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if red.Redact(err.Error()) != err.Error() {
		return errors.New(red.Redact(err.Error()))
	}
	return err
}

// parse reads an answer: an error is the presence of "error", or an error
// status; a body that is not the envelope is ERROR_UNEXPECTED_ANSWER.
func parse(status int, h http.Header, body []byte) (*Result, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		desc := http.StatusText(status)
		if status < 300 {
			return nil, &APIError{Code: CodeUnexpectedAnswer, Description: "answer is not json", Status: status, RetryAfter: retryAfter(h)}
		}
		return nil, &APIError{Description: desc, Status: status, RetryAfter: retryAfter(h)}
	}
	if env.Error != nil || status >= 300 {
		e := &APIError{Description: env.Description, Status: status, RetryAfter: retryAfter(h), Time: env.Time}
		if env.Error != nil {
			e.Code = *env.Error
		}
		if e.Code == "" && e.Description == "" {
			e.Description = http.StatusText(status)
		}
		return nil, e
	}
	r := &Result{Result: env.Result, Next: env.Next, Total: env.Total}
	if env.Time != nil {
		r.Time = *env.Time
	}
	return r, nil
}

func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		// cap before multiplying: a huge value must not overflow into a
		// negative wait (found by FuzzParseEnvelope)
		const maxSeconds = 7 * 24 * 3600
		return time.Duration(min(n, maxSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func isCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// noteOperating holds a method after OPERATION_TIME_LIMIT until its reset.
func (b *Bitrix24) noteOperating(method string, err error) {
	if !isCode(err, CodeOperationTimeLimit) {
		return
	}
	d, _ := RetryDelay(err)
	b.hold(method, b.opts.clock.Now().Add(d))
}

// noteTime holds a method whose operating time is near the limit.
func (b *Bitrix24) noteTime(method string, t *Time) {
	if b.opts.operatingLimit <= 0 || t.Operating < 0.95*b.opts.operatingLimit.Seconds() {
		return
	}
	if d, ok := t.resetWait(); ok {
		b.hold(method, b.opts.clock.Now().Add(d))
	}
}

func (b *Bitrix24) hold(method string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.holds[method]) {
		b.holds[method] = until
	}
	b.opts.logger.Warn("bitrix24 operating limit: holding method", "portal", b.portal, "method", method, "until", until)
}

// waitHold waits while method is held; when the hold outlasts the longest
// allowed wait (or ctx), it fails at once with OPERATION_TIME_LIMIT.
func (b *Bitrix24) waitHold(ctx context.Context, method string) error {
	b.mu.Lock()
	until, ok := b.holds[method]
	b.mu.Unlock()
	if !ok {
		return nil
	}
	d := until.Sub(b.opts.clock.Now())
	if d <= 0 {
		b.mu.Lock()
		if b.holds[method].Equal(until) {
			delete(b.holds, method)
		}
		b.mu.Unlock()
		return nil
	}
	if !b.canWait(ctx, d) {
		return &APIError{
			Code:        CodeOperationTimeLimit,
			Description: "method held by the client until " + until.UTC().Format(time.RFC3339),
			Time:        &Time{Finish: unixSeconds(b.opts.clock.Now()), OperatingResetAt: unixSeconds(until)},
		}
	}
	select {
	case <-b.opts.clock.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// quietLogger keeps resty from logging: its messages hold request URLs,
// and those hold the webhook secret.
type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
