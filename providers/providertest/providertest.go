// Package providertest is the conformance suite of provider adapters.
// Every provider package calls Exercise from its tests with Fixtures that
// build its requests; the suite runs the adapter through valid, wrong-secret,
// missing-credential, empty and malformed, unsupported-media, at-the-limit,
// replayed, store-unavailable and rotated-secret requests, and checks the
// error codes of providers.Provider's contract. Fuzz does the same for
// arbitrary input.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
)

// Epoch is the clock of the suite: requests are made and verified at Epoch
// unless a check moves one of them.
var Epoch = time.Unix(1_767_225_600, 0).UTC() // 2026-01-01T00:00:00Z

// Header is a providers.Header over an http.Header.
type Header http.Header

// Get returns the first value of name, case-insensitively.
func (h Header) Get(name string) string {
	if v := http.Header(h).Get(name); v != "" {
		return v
	}
	// Keys not in canonical form (set by hand) are found too.
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// Each calls fn for every header value.
func (h Header) Each(fn func(name, value string)) {
	for k, vs := range h {
		for _, v := range vs {
			fn(k, v)
		}
	}
}

// Set sets name to value.
func (h Header) Set(name, value string) { http.Header(h).Set(name, value) }

// Del deletes name.
func (h Header) Del(name string) { http.Header(h).Del(name) }

// NewRequest returns a POST request for source with a body, a content
// type, headers as name, value pairs and the suite's clock.
func NewRequest(source, contentType string, body []byte, headers ...string) *providers.Request {
	h := Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &providers.Request{
		SourceID:    source,
		Method:      http.MethodPost,
		ContentType: contentType,
		Header:      h,
		Query:       url.Values{},
		Body:        body,
		Now:         Epoch,
		RemoteAddr:  "127.0.0.1:50000",
	}
}

// Args are what a fixture builds a request from.
type Args struct {
	Secret   string    // the secret the credential is made with
	Now      time.Time // when the request is sent (signature timestamps)
	Delivery int       // which delivery: the same Delivery is the same webhook sent again
	Padding  int       // bytes of filler the payload must carry, growing the body by exactly that much
}

// Fixtures say how to build a provider's requests and what differs between
// providers.
type Fixtures struct {
	// Source is the config entry given to the constructor. ID defaults to
	// "conformance".
	Source config.Source
	// Request builds a valid request whose credential is made with
	// a.Secret. Required.
	Request func(a Args) *providers.Request
	// StripCredential removes the credential from a request built by
	// Request (and re-signs nothing). Required.
	StripCredential func(req *providers.Request)
	// Malformed builds a request, valid but for a body the provider
	// cannot parse (400). Required.
	Malformed func(a Args) *providers.Request
	// UnsupportedMedia is a content type the provider refuses (415).
	// Empty means the provider takes any media type; the suite then
	// checks that an application/octet-stream body is accepted.
	UnsupportedMedia string
	// Event is the event name of a Request.
	Event string
	// InvalidCode is the error code of a missing or wrong credential:
	// hookgate.EInvalidToken or hookgate.EInvalidSignature.
	InvalidCode string
	// Dedup says that Request carries a delivery id: the DedupKey is set,
	// the same for the same Delivery and different otherwise. Without
	// it, DedupKey must be "".
	Dedup bool
	// Tolerance is the provider's timestamp tolerance; 0 = it has none.
	Tolerance time.Duration
	// MaxBodyBytes is the size of the at-the-limit request; 0 means the
	// source's max_body_bytes, else 1 MiB (the server default).
	MaxBodyBytes int
}

// Exercise runs the conformance suite on the provider that c builds for
// f.Source.
func Exercise(t *testing.T, c providers.Constructor, f Fixtures) {
	t.Helper()
	if f.Request == nil || f.StripCredential == nil || f.Malformed == nil {
		t.Fatal("providertest: Fixtures need Request, StripCredential and Malformed")
	}
	if f.InvalidCode != hookgate.EInvalidToken && f.InvalidCode != hookgate.EInvalidSignature {
		t.Fatalf("providertest: Fixtures.InvalidCode = %q; want %q or %q", f.InvalidCode, hookgate.EInvalidToken, hookgate.EInvalidSignature)
	}
	if f.Source.ID == "" {
		f.Source.ID = "conformance"
	}
	p, err := c(f.Source)
	if err != nil {
		t.Fatalf("constructor(%+v) = %v", f.Source, err)
	}
	s := &suite{p: p, f: f}
	t.Run("Valid", s.valid)
	t.Run("WrongSecret", s.wrongSecret)
	t.Run("MissingCredential", s.missingCredential)
	t.Run("Empty", s.empty)
	t.Run("Malformed", s.malformed)
	t.Run("UnsupportedMedia", s.unsupportedMedia)
	t.Run("AtLimit", s.atLimit)
	t.Run("Replayed", s.replayed)
	t.Run("Stale", s.stale)
	t.Run("Unavailable", s.unavailable)
	t.Run("Rotation", s.rotation)
	t.Run("BodyNotRetained", s.bodyNotRetained)
}

const (
	current  = "conformance-current-secret-4f1c9a"
	previous = "conformance-previous-secret-7d2e0b"
	wrong    = "conformance-wrong-secret-0a9b8c"
)

type suite struct {
	p providers.Provider
	f Fixtures
}

func (s *suite) request(a Args) *providers.Request {
	if a.Now.IsZero() {
		a.Now = Epoch
	}
	req := s.f.Request(a)
	req.Now = Epoch
	return req
}

// Store returns Secrets serving list.
func Store(list ...string) providers.Secrets {
	out := make([]hookgate.Secret, len(list))
	for i, v := range list {
		out[i] = hookgate.Secret(v)
	}
	return func(context.Context) ([]hookgate.Secret, error) { return out, nil }
}

// ErrUnavailable is what Unavailable's Secrets return.
var ErrUnavailable = hookgate.Errorf(hookgate.EUnavailable, "secret store unavailable")

// Unavailable returns Secrets that fail as a store that is down does.
func Unavailable() providers.Secrets {
	return func(context.Context) ([]hookgate.Secret, error) { return nil, ErrUnavailable }
}

// forbidden returns Secrets that fail the test when called.
func forbidden(t *testing.T) providers.Secrets {
	return func(context.Context) ([]hookgate.Secret, error) {
		t.Error("Verify read the secrets of a request without a credential")
		return nil, ErrUnavailable
	}
}

// accept parses and verifies req against secrets, failing t on any error.
func (s *suite) accept(t *testing.T, what string, req *providers.Request, secrets providers.Secrets) *providers.Message {
	t.Helper()
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse(%s) = %v; want nil", what, err)
	}
	if err := s.p.Verify(context.Background(), req, msg, secrets); err != nil {
		t.Fatalf("Verify(%s) = %v; want nil", what, err)
	}
	return msg
}

// wantCode fails t unless err has code, and checks that its text holds no
// secret.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := hookgate.ErrorCode(err); got != code {
		t.Errorf("%s = %v (code %q); want code %q", what, err, got, code)
	}
	noSecret(t, what, err)
}

func noSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, v := range []string{current, previous, wrong} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("%s = %q; it shows a secret", what, err)
		}
	}
}

func (s *suite) valid(t *testing.T) {
	msg := s.accept(t, "valid request", s.request(Args{Secret: current}), Store(current))
	if msg.Event != s.f.Event {
		t.Errorf("Parse(valid request).Event = %q; want %q", msg.Event, s.f.Event)
	}
	if msg.Params == nil {
		t.Errorf("Parse(valid request).Params = nil; want a map (empty if need be)")
	}
}

func (s *suite) wrongSecret(t *testing.T) {
	req := s.request(Args{Secret: wrong})
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse(wrong secret) = %v; want nil", err)
	}
	err = s.p.Verify(context.Background(), req, msg, Store(current, previous))
	wantCode(t, "Verify(wrong secret)", err, s.f.InvalidCode)
}

func (s *suite) missingCredential(t *testing.T) {
	req := s.request(Args{Secret: current})
	s.f.StripCredential(req)
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse(no credential) = %v; want nil (credentials are Verify's)", err)
	}
	err = s.p.Verify(context.Background(), req, msg, forbidden(t))
	wantCode(t, "Verify(no credential)", err, s.f.InvalidCode)
}

func (s *suite) empty(t *testing.T) {
	req := s.request(Args{Secret: current})
	req.Body = nil
	_, err := s.p.Parse(req)
	wantCode(t, "Parse(empty body)", err, hookgate.EBadRequest)
}

func (s *suite) malformed(t *testing.T) {
	req := s.f.Malformed(Args{Secret: current, Now: Epoch})
	req.Now = Epoch
	_, err := s.p.Parse(req)
	wantCode(t, "Parse(malformed body)", err, hookgate.EBadRequest)
}

func (s *suite) unsupportedMedia(t *testing.T) {
	req := s.request(Args{Secret: current})
	if s.f.UnsupportedMedia == "" {
		req.ContentType = "application/octet-stream"
		if h, ok := req.Header.(Header); ok {
			h.Set("Content-Type", req.ContentType)
		}
		if _, err := s.p.Parse(req); err != nil {
			t.Errorf("Parse(application/octet-stream) = %v; want nil (Fixtures.UnsupportedMedia is empty)", err)
		}
		return
	}
	req.ContentType = s.f.UnsupportedMedia
	if h, ok := req.Header.(Header); ok {
		h.Set("Content-Type", req.ContentType)
	}
	_, err := s.p.Parse(req)
	wantCode(t, "Parse("+s.f.UnsupportedMedia+")", err, hookgate.EUnsupportedMedia)
}

// atLimit checks a body of exactly the size limit: the gateway answers 413
// above it, so the adapter must take everything up to it.
func (s *suite) atLimit(t *testing.T) {
	limit := s.f.MaxBodyBytes
	if limit == 0 {
		limit = int(s.f.Source.MaxBodyBytes)
	}
	if limit == 0 {
		limit = 1 << 20
	}
	base := len(s.request(Args{Secret: current}).Body)
	if base > limit {
		t.Fatalf("a valid request is %d bytes, over the limit %d", base, limit)
	}
	req := s.request(Args{Secret: current, Padding: limit - base})
	if len(req.Body) != limit {
		t.Fatalf("request with Padding %d is %d bytes; want %d (Fixtures.Request must grow the body by Padding)", limit-base, len(req.Body), limit)
	}
	msg := s.accept(t, "body at the limit", req, Store(current))
	if msg.Event != s.f.Event {
		t.Errorf("Parse(body at the limit).Event = %q; want %q", msg.Event, s.f.Event)
	}
}

func (s *suite) replayed(t *testing.T) {
	first := s.accept(t, "delivery 1", s.request(Args{Secret: current, Delivery: 1}), Store(current))
	again := s.accept(t, "delivery 1 again", s.request(Args{Secret: current, Delivery: 1}), Store(current))
	other := s.accept(t, "delivery 2", s.request(Args{Secret: current, Delivery: 2}), Store(current))
	if first.DedupKey != again.DedupKey {
		t.Errorf("DedupKey of the same delivery: %q, then %q; want equal", first.DedupKey, again.DedupKey)
	}
	if !s.f.Dedup {
		if first.DedupKey != "" {
			t.Errorf("DedupKey = %q; want \"\" (Fixtures.Dedup is false)", first.DedupKey)
		}
		return
	}
	if first.DedupKey == "" {
		t.Errorf("DedupKey = \"\"; want a delivery id")
	}
	if first.DedupKey == other.DedupKey {
		t.Errorf("DedupKey of deliveries 1 and 2 = %q; want different", first.DedupKey)
	}
}

// stale checks the timestamp tolerance: a request signed just inside it
// passes, one signed beyond it either way is rejected, even with the right
// secret.
func (s *suite) stale(t *testing.T) {
	if s.f.Tolerance == 0 {
		t.Skip("provider has no timestamp")
	}
	s.accept(t, "signed just inside the tolerance", s.request(Args{Secret: current, Now: Epoch.Add(-s.f.Tolerance + time.Second)}), Store(current))
	for _, c := range []struct {
		name string
		at   time.Time
	}{
		{"old", Epoch.Add(-s.f.Tolerance - time.Minute)},
		{"10 minutes old", Epoch.Add(-10 * time.Minute)},
		{"future", Epoch.Add(s.f.Tolerance + time.Minute)},
	} {
		if c.name == "10 minutes old" && s.f.Tolerance >= 10*time.Minute {
			continue
		}
		req := s.request(Args{Secret: current, Now: c.at})
		msg, err := s.p.Parse(req)
		if err != nil {
			t.Fatalf("Parse(%s) = %v; want nil", c.name, err)
		}
		err = s.p.Verify(context.Background(), req, msg, Store(current))
		wantCode(t, "Verify("+c.name+")", err, s.f.InvalidCode)
	}
}

func (s *suite) unavailable(t *testing.T) {
	req := s.request(Args{Secret: current})
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse = %v; want nil", err)
	}
	err = s.p.Verify(context.Background(), req, msg, Unavailable())
	wantCode(t, "Verify(store down)", err, hookgate.EUnavailable)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Verify(store down) = %v; want the store's error, wrapped or not", err)
	}
}

func (s *suite) rotation(t *testing.T) {
	store := Store(current, previous)
	s.accept(t, "current secret", s.request(Args{Secret: current}), store)
	s.accept(t, "previous secret during rotation", s.request(Args{Secret: previous}), store)
	req := s.request(Args{Secret: previous})
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse = %v; want nil", err)
	}
	err = s.p.Verify(context.Background(), req, msg, Store(current))
	wantCode(t, "Verify(previous secret after rotation)", err, s.f.InvalidCode)
}

// bodyNotRetained checks that the message's event and parameters do not
// alias the request body, which the gateway reuses after the call.
// Message.JSON may: the gateway encodes it within the call, and a copy of
// a large body would cost its size again (docs/performance.md).
func (s *suite) bodyNotRetained(t *testing.T) {
	req := s.request(Args{Secret: current})
	msg, err := s.p.Parse(req)
	if err != nil {
		t.Fatalf("Parse = %v; want nil", err)
	}
	event, params := msg.Event, fmt.Sprint(msg.Params)
	for i := range req.Body {
		req.Body[i] = 'x'
	}
	if msg.Event != event || fmt.Sprint(msg.Params) != params {
		t.Errorf("Message.Event or Params changed with the request body: they must be copies")
	}
}

// Fuzz feeds arbitrary requests to the provider that c builds for src:
// Parse and Verify must not panic, and must answer with the codes of the
// contract. Seeds are requests in the shape NewRequest builds.
func Fuzz(f *testing.F, c providers.Constructor, src config.Source, secret string, seeds ...*providers.Request) {
	if src.ID == "" {
		src.ID = "fuzz"
	}
	p, err := c(src)
	if err != nil {
		f.Fatalf("constructor(%+v) = %v", src, err)
	}
	for _, r := range seeds {
		f.Add(r.ContentType, headerText(r.Header), r.Query.Encode(), r.PathKey, r.Body, r.Now.Unix())
	}
	store := Store(secret)
	f.Fuzz(func(t *testing.T, contentType, header, query, pathKey string, body []byte, now int64) {
		req := NewRequest(src.ID, contentType, body)
		for _, line := range strings.Split(header, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				req.Header.(Header)[k] = append(req.Header.(Header)[k], strings.TrimSpace(v))
			}
		}
		req.Query, _ = url.ParseQuery(query)
		if req.Query == nil {
			req.Query = url.Values{}
		}
		req.PathKey = pathKey
		req.Now = time.Unix(now, 0)
		msg, err := p.Parse(req)
		if err != nil {
			if code := hookgate.ErrorCode(err); code != hookgate.EUnsupportedMedia && code != hookgate.EBadRequest {
				t.Fatalf("Parse = %v; want code %q or %q", err, hookgate.EUnsupportedMedia, hookgate.EBadRequest)
			}
			return
		}
		if msg == nil || msg.Event == "" {
			t.Fatalf("Parse = %+v, nil; want a message with an event", msg)
		}
		err = p.Verify(context.Background(), req, msg, store)
		switch hookgate.ErrorCode(err) {
		case "", hookgate.EInvalidToken, hookgate.EInvalidSignature:
		default:
			t.Fatalf("Verify = %v; want nil, %q or %q", err, hookgate.EInvalidToken, hookgate.EInvalidSignature)
		}
		if err != nil && secret != "" && strings.Contains(err.Error(), secret) {
			t.Fatalf("Verify = %q; it shows the secret", err)
		}
	})
}

func headerText(h providers.Header) string {
	var b strings.Builder
	h.Each(func(name, value string) {
		if textproto.CanonicalMIMEHeaderKey(name) == "Content-Type" {
			return
		}
		b.WriteString(name + ": " + value + "\n")
	})
	return b.String()
}
