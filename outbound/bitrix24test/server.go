// Package bitrix24test is a Bitrix24 REST simulator for tests, demos and
// benchmarks. It is written from ../shared/reference/bitrix24.md: it serves
// /rest/<user>/<secret>/<method>[.json] for GET query strings, urlencoded,
// multipart and JSON POST bodies with PHP bracket parameters, keeps an
// in-memory CRM of deals, contacts and leads, runs batch, and enforces the
// portal's leaky bucket (503 QUERY_LIMIT_EXCEEDED) and per-method operating
// limit (429 OPERATION_TIME_LIMIT). Faults and latency can be injected, and
// it counts what it received so tests can assert on it.
package bitrix24test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default credentials of a new Server: the webhook /rest/1/<DefaultSecret>/.
const (
	DefaultUser   = "1"
	DefaultSecret = "sim0secret0webhook0code"
)

// Error codes the simulator answers with (reference/bitrix24.md).
const (
	CodeQueryLimitExceeded  = "QUERY_LIMIT_EXCEEDED"
	CodeOperationTimeLimit  = "OPERATION_TIME_LIMIT"
	CodeInternalServerError = "INTERNAL_SERVER_ERROR"
	CodeNoAuthFound         = "NO_AUTH_FOUND"
	CodeInvalidCredentials  = "INVALID_CREDENTIALS"
	CodeMethodNotFound      = "ERROR_METHOD_NOT_FOUND"
	CodeBatchLength         = "ERROR_BATCH_LENGTH_EXCEEDED"
	CodeBatchMethod         = "ERROR_BATCH_METHOD_NOT_ALLOWED"
	CodeInvalidRequest      = "INVALID_REQUEST"
)

// PageSize is the fixed page size of list methods.
const PageSize = 50

// MaxBatch is the most commands one batch may hold.
const MaxBatch = 50

// Option configures a Server.
type Option func(*Server)

// WithCredentials replaces the accepted webhook user/secret pairs.
// Call it more than once to accept several.
func WithCredentials(user, secret string) Option {
	return func(s *Server) {
		if !s.customCreds {
			s.creds = map[string]string{}
			s.customCreds = true
		}
		s.creds[user+"/"+secret] = user
	}
}

// WithRate sets the leaky bucket: capacity x requests, draining y per
// second. x <= 0 switches the limit off. The default is 50 / 2 per second.
func WithRate(x int, y float64) Option {
	return func(s *Server) { s.bucketMax, s.drain = float64(x), y }
}

// WithOperatingLimit sets the per-method operating limit: limit seconds of
// execution per method within window (default 480 s per 10 min). A limit
// <= 0 switches it off.
func WithOperatingLimit(limit, window time.Duration) Option {
	return func(s *Server) { s.opLimit, s.opWindow = limit, window }
}

// WithOperatingCost charges every call d of execution time instead of the
// time it really took, so that tests reach the operating limit quickly.
func WithOperatingCost(d time.Duration) Option {
	return func(s *Server) { s.opCost = d }
}

// WithClock sets the simulator's clock (the bucket drain, the operating
// window, the time block). Tests share it with the client's clock.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithLatency delays every answer by d.
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// Fault is an injected answer: the next Count requests (to Method, or any
// method when empty) get Status with the error envelope {Code, Description}.
type Fault struct {
	Method      string
	Count       int
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration // sets a Retry-After header when > 0
	Latency     time.Duration // extra delay before answering
	// AfterCommit runs the request as usual (a write commits) and then
	// never answers: the connection drops when the client gives up, or
	// after Latency (default 1 min). Status and Code are not used.
	AfterCommit bool
}

// Request is one request the simulator received.
type Request struct {
	At         time.Time
	HTTPMethod string
	User       string
	Method     string // REST method, "" when the path had none
	Params     map[string]any
	Status     int    // the status answered
	Code       string // the error code answered, "" on success
	// TraceParent is the request's W3C traceparent header, "" when none.
	TraceParent string
}

// Server is the simulated portal. Its zero value is not usable; call
// NewServer.
type Server struct {
	creds       map[string]string // "user/secret" → user
	customCreds bool
	now         func() time.Time
	latency     time.Duration

	mu        sync.Mutex
	bucketMax float64
	drain     float64
	level     float64
	levelAt   time.Time
	opLimit   time.Duration
	opWindow  time.Duration
	opCost    time.Duration
	ops       map[string][]opCharge // per user+method
	faults    []Fault
	received  []Request
	perMethod map[string]int
	perCode   map[string]int
	nested    map[string]int // commands run inside batches, per method
	crm       map[string]*entity
	events    *eventSink // sync.go; nil: no CRM events are sent
}

type opCharge struct {
	at   time.Time
	cost time.Duration
}

// NewServer returns a simulator with an empty CRM.
func NewServer(opts ...Option) *Server {
	s := &Server{
		creds:     map[string]string{DefaultUser + "/" + DefaultSecret: DefaultUser},
		now:       time.Now,
		bucketMax: 50,
		drain:     2,
		opLimit:   480 * time.Second,
		opWindow:  10 * time.Minute,
		ops:       map[string][]opCharge{},
		perMethod: map[string]int{},
		perCode:   map[string]int{},
		nested:    map[string]int{},
		crm: map[string]*entity{
			"deal":    newEntity("deal"),
			"contact": newEntity("contact"),
			"lead":    newEntity("lead"),
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start serves s on a new httptest.Server on loopback; close it when done.
func (s *Server) Start() *httptest.Server { return httptest.NewServer(s) }

// ListenAndServe serves s on addr until ctx ends. ready, when not nil, is
// called with the base URL once the listener is open.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(baseURL string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready("http://" + ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// InjectFault queues f; faults are served in the order injected.
func (s *Server) InjectFault(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency changes the delay added to every answer.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Requests returns how many requests named method the simulator received
// (whatever it answered); "" counts requests without a method.
func (s *Server) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perMethod[method]
}

// TotalRequests returns how many requests the simulator received.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

// Answers returns how many answers carried the error code (e.g.
// QUERY_LIMIT_EXCEEDED); "" counts successful answers.
func (s *Server) Answers(code string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perCode[code]
}

// Received returns a copy of every request received, in order.
func (s *Server) Received() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.received...)
}

// ResetCounters forgets the requests received (the CRM, bucket and
// operating time stay).
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = nil
	s.perMethod = map[string]int{}
	s.perCode = map[string]int{}
	s.nested = map[string]int{}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	user, secret, method, ok := splitPath(r.URL.Path)
	params, perr := readParams(r)
	plainParams := map[string]any{}
	if perr == nil {
		plainParams, _ = plain(params).(map[string]any)
	}
	req := Request{At: start, HTTPMethod: r.Method, User: user, Method: method, Params: plainParams, TraceParent: r.Header.Get("traceparent")}

	a := s.answer(r.Context(), start, req, user, secret, method, ok, params, perr)
	req.Status, req.Code = a.status, a.code
	if a.hang {
		req.Status, req.Code = 0, "after_commit"
	}

	s.mu.Lock()
	s.received = append(s.received, req)
	s.perMethod[method]++
	s.perCode[a.code]++
	s.mu.Unlock()

	if a.hang {
		hangAfterCommit(r.Context(), a.hangFor) // sync.go
	}
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((a.retryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(a.body)
}

type answer struct {
	status     int
	code       string
	body       map[string]any
	retryAfter time.Duration
	hang       bool // committed, never answered (Fault.AfterCommit)
	hangFor    time.Duration
}

func (s *Server) answer(ctx context.Context, start time.Time, req Request, user, secret, method string, pathOK bool, params *object, perr error) answer {
	s.mu.Lock()
	latency := s.latency
	var fault *Fault
	for i := range s.faults {
		f := &s.faults[i]
		if f.Method == "" || f.Method == method {
			c := *f
			fault = &c
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			break
		}
	}
	s.mu.Unlock()

	var afterCommit *Fault
	if fault != nil && fault.AfterCommit {
		afterCommit, fault = fault, nil
	}
	if fault != nil {
		latency += fault.Latency
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if fault != nil {
		a := s.errorAnswer(start, user, method, fault.Status, fault.Code, fault.Description)
		a.retryAfter = fault.RetryAfter
		return a
	}

	if !s.takeBucket(start) {
		return s.errorAnswer(start, user, method, http.StatusServiceUnavailable, CodeQueryLimitExceeded, "Too many requests")
	}
	if !pathOK || secret == "" {
		return s.errorAnswer(start, user, method, http.StatusUnauthorized, CodeNoAuthFound, "Wrong authorization data")
	}
	if _, ok := s.creds[user+"/"+secret]; !ok {
		return s.errorAnswer(start, user, method, http.StatusUnauthorized, CodeInvalidCredentials, "Invalid request credentials")
	}
	if method == "" {
		return s.errorAnswer(start, user, method, http.StatusNotFound, CodeMethodNotFound, "Method not found!")
	}
	if perr != nil {
		return s.errorAnswer(start, user, method, http.StatusBadRequest, CodeInvalidRequest, perr.Error())
	}
	if resetAt, over := s.operatingExceeded(user, method, start); over {
		a := s.errorAnswer(start, user, method, http.StatusTooManyRequests, CodeOperationTimeLimit,
			"Method is blocked due to operation time limit.")
		a.body["time"] = s.timeBlock(start, user, method, resetAt)
		return a
	}

	res, written := s.write(user, method, params) // sync.go: MODIFY_BY_ID, events
	if !written {
		res = s.call(user, method, params, true)
	}
	s.charge(user, method, start)
	if afterCommit != nil {
		return answer{status: http.StatusGatewayTimeout, hang: true, hangFor: afterCommit.Latency}
	}
	if res.err != nil {
		return s.errorAnswer(start, user, method, res.err.status, res.err.code, res.err.description)
	}
	body := map[string]any{"result": res.result}
	if res.total != nil {
		body["total"] = *res.total
	}
	if res.next != nil {
		body["next"] = *res.next
	}
	body["time"] = s.timeBlock(start, user, method, time.Time{})
	return answer{status: http.StatusOK, body: body}
}

func (s *Server) errorAnswer(start time.Time, user, method string, status int, code, description string) answer {
	return answer{
		status: status,
		code:   code,
		body: map[string]any{
			"error":             code,
			"error_description": description,
			"time":              s.timeBlock(start, user, method, time.Time{}),
		},
	}
}

// splitPath reads /rest/<user>/<secret>/<method>[.json]. ok is false when
// the path is not under /rest/ at all or lacks the user/secret segments.
func splitPath(p string) (user, secret, method string, ok bool) {
	rest, found := strings.CutPrefix(p, "/rest/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch len(parts) {
	case 3:
		user, secret, method = parts[0], parts[1], parts[2]
	case 2:
		user, secret = parts[0], parts[1]
	case 1:
		return "", "", trimFormat(parts[0]), false
	default:
		return "", "", "", false
	}
	return user, secret, trimFormat(method), true
}

func trimFormat(m string) string {
	m = strings.TrimSuffix(m, ".json")
	return strings.ToLower(m)
}

// takeBucket adds one request to the leaky bucket; false means over the
// limit (the request is not added).
func (s *Server) takeBucket(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bucketMax <= 0 {
		return true
	}
	if !s.levelAt.IsZero() {
		if dt := now.Sub(s.levelAt).Seconds(); dt > 0 {
			s.level -= dt * s.drain
			if s.level < 0 {
				s.level = 0
			}
		}
	}
	if now.After(s.levelAt) {
		s.levelAt = now
	}
	if s.level+1 > s.bucketMax+1e-9 {
		return false
	}
	s.level++
	return true
}

// BucketLevel returns the leaky bucket's current fill.
func (s *Server) BucketLevel() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.level - s.now().Sub(s.levelAt).Seconds()*s.drain
	if l < 0 {
		l = 0
	}
	return l
}

func (s *Server) operatingExceeded(user, method string, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opLimit <= 0 {
		return time.Time{}, false
	}
	key := user + "/" + method
	charges := s.prune(key, now)
	var sum time.Duration
	for _, c := range charges {
		sum += c.cost
	}
	if sum >= s.opLimit && len(charges) > 0 {
		return charges[0].at.Add(s.opWindow), true
	}
	return time.Time{}, false
}

func (s *Server) prune(key string, now time.Time) []opCharge {
	charges := s.ops[key]
	i := 0
	for i < len(charges) && !charges[i].at.Add(s.opWindow).After(now) {
		i++
	}
	charges = charges[i:]
	s.ops[key] = charges
	return charges
}

func (s *Server) charge(user, method string, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opLimit <= 0 {
		return
	}
	cost := s.opCost
	if cost <= 0 {
		cost = s.now().Sub(start)
	}
	key := user + "/" + method
	s.ops[key] = append(s.ops[key], opCharge{at: start, cost: cost})
}

// timeBlock renders the "time" member. resetAt, when set, overrides the
// computed operating_reset_at.
func (s *Server) timeBlock(start time.Time, user, method string, resetAt time.Time) map[string]any {
	finish := s.now()
	if finish.Before(start) {
		finish = start
	}
	s.mu.Lock()
	key := user + "/" + method
	charges := s.prune(key, finish)
	var operating time.Duration
	for _, c := range charges {
		operating += c.cost
	}
	if resetAt.IsZero() {
		if len(charges) > 0 {
			resetAt = charges[0].at.Add(s.opWindow)
		} else {
			resetAt = finish.Add(s.opWindow)
		}
	}
	s.mu.Unlock()
	d := finish.Sub(start).Seconds()
	return map[string]any{
		"start":              unixFloat(start),
		"finish":             unixFloat(finish),
		"duration":           d,
		"processing":         d,
		"date_start":         start.Format(time.RFC3339),
		"date_finish":        finish.Format(time.RFC3339),
		"operating_reset_at": ceilUnix(resetAt),
		"operating":          operating.Seconds(),
	}
}

func unixFloat(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ceilUnix is t in whole unix seconds, rounded up: the portal reports
// operating_reset_at as an integer, never before the real reset.
func ceilUnix(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}

// apiError is a method error: the answer's status and envelope.
type apiError struct {
	status      int
	code        string
	description string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %s", e.code, e.description) }

type callResult struct {
	result any
	total  *int
	next   *int
	err    *apiError
}
