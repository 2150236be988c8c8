// Package vault is hookgate's secret store: HashiCorp Vault KV v2 (token or
// AppRole auth) for production, a local YAML file for development.
//
// A secret reference is "path" or "path#field" (config.ParseSecretRef); the
// field defaults to "token". Values are cached for cache_ttl; when the backend
// cannot be reached, cached values keep being served (even expired ones), and
// a value never seen before is an EUnavailable error. During a rotation the
// previous KV versions stay valid until the next version's created_time plus
// rotation_grace.
//
// The store never puts a secret value into an error or a log line, and it
// remembers every value it served so that Redact can remove them from text.
package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// Lookup results reported to the observer (WithObserver).
const (
	ResultHit   = "hit"   // served from a fresh cache entry
	ResultMiss  = "miss"  // read from the backend
	ResultStale = "stale" // served from the cache because the backend failed
	ResultError = "error" // no value: not found, or backend down and nothing cached
)

// errNotFound marks a backend answer "this secret does not exist".
var errNotFound = errors.New("vault: secret not found")

// backend is where secrets come from: the file store or Vault KV v2.
type backend interface {
	// read returns the secret at path: its current version first, then
	// previous versions still inside their grace period at now. It returns
	// an error wrapping errNotFound when the path does not exist. Its errors
	// never hold secret values.
	read(ctx context.Context, path string, now time.Time) (*document, error)
	// check reports whether the backend is reachable.
	check(ctx context.Context) error
	// cacheTTL is how long a read stays fresh; 0 = ask the backend every time.
	cacheTTL() time.Duration
	close() error
}

// document is one secret path: version 0 is the current one.
type document struct {
	versions []version
}

// version is one KV version of a secret path.
type version struct {
	number int
	data   map[string]string
	// until is when a previous version stops being valid (its successor's
	// created_time + rotation_grace); zero for the current version.
	until time.Time
}

// values returns the field's values that are valid at now, current first.
func (d *document) values(field string, now time.Time) ([]hookgate.Secret, bool) {
	if len(d.versions) == 0 {
		return nil, false
	}
	cur, ok := d.versions[0].data[field]
	if !ok {
		return nil, false
	}
	out := []hookgate.Secret{hookgate.Secret(cur)}
	for _, v := range d.versions[1:] {
		if !now.Before(v.until) {
			continue
		}
		if s, ok := v.data[field]; ok && s != cur {
			out = append(out, hookgate.Secret(s))
		}
	}
	return out, true
}

// Option configures a Store.
type Option func(*options)

type options struct {
	now     func() time.Time
	log     *slog.Logger
	observe func(result string)
	getenv  func(string) string
}

// WithClock sets the clock used for cache expiry and rotation grace.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithObserver sets a function called once per lookup with its result:
// "hit", "miss", "stale" or "error" (for metrics).
func WithObserver(fn func(result string)) Option {
	return func(o *options) { o.observe = fn }
}

// WithEnv sets the environment lookup used for VAULT_TOKEN (default
// os.Getenv).
func WithEnv(getenv func(string) string) Option {
	return func(o *options) { o.getenv = getenv }
}

// Store reads secrets from the configured backend through a cache. It is
// safe for concurrent use.
type Store struct {
	backend backend
	opts    options
	red     *hookgate.Redactor
	flight  singleflight.Group
	timeout time.Duration

	mu     sync.Mutex
	cache  map[string]*entry
	outage bool // stale values are being served; warned once
}

// entry is a cached document.
type entry struct {
	doc     *document
	fetched time.Time // when the backend answered
	retry   time.Time // after a failed refresh: serve stale until then
}

// New opens the secret store that cfg selects ("file" or "vault"). It checks
// the backend up front: the file must parse; Vault must accept the token or
// the AppRole login.
func New(ctx context.Context, cfg config.Secrets, opts ...Option) (*Store, error) {
	o := options{
		now:     time.Now,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		observe: func(string) {},
	}
	for _, opt := range opts {
		opt(&o)
	}
	red := hookgate.NewRedactor()
	var b backend
	var err error
	switch cfg.Backend {
	case "file":
		b, err = openFile(cfg.File, o.log, red)
	case "vault":
		b, err = openVault(ctx, cfg.Vault, o, red)
	default:
		err = fmt.Errorf("vault: unknown secrets backend %q (want file or vault)", cfg.Backend)
	}
	if err != nil {
		return nil, err
	}
	return newStore(b, o, red, cfg.Vault.Timeout.D()), nil
}

func newStore(b backend, o options, red *hookgate.Redactor, timeout time.Duration) *Store {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Store{backend: b, opts: o, red: red, cache: map[string]*entry{}, timeout: timeout}
}

// Secret returns the current value of the secret ref ("path" or
// "path#field"). Its errors are *hookgate.Error values: ENotFound when the
// secret or field does not exist, EUnavailable when the backend cannot be
// read and nothing is cached.
func (s *Store) Secret(ctx context.Context, ref string) (hookgate.Secret, error) {
	vals, err := s.Secrets(ctx, ref)
	if err != nil {
		return "", err
	}
	return vals[0], nil
}

// Secrets returns the values ref may match: the current one first, then
// previous KV versions whose successor was created less than rotation_grace
// ago. The file backend has no history: it returns just the current value.
func (s *Store) Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error) {
	path, field, err := config.ParseSecretRef(ref)
	if err != nil {
		s.opts.observe(ResultError)
		return nil, hookgate.WrapError(hookgate.ENotFound, "bad secret reference", err)
	}
	doc, result, err := s.document(ctx, path)
	if err != nil {
		s.opts.observe(ResultError)
		return nil, err
	}
	vals, ok := doc.values(field, s.opts.now())
	if !ok {
		s.opts.observe(ResultError)
		return nil, hookgate.Errorf(hookgate.ENotFound, "secret %q has no field %q", path, field)
	}
	s.red.AddSecrets(vals)
	s.opts.observe(result)
	return vals, nil
}

// Func returns ref bound to the store, in the shape providers.Secrets wants.
func (s *Store) Func(ref string) func(ctx context.Context) ([]hookgate.Secret, error) {
	return func(ctx context.Context) ([]hookgate.Secret, error) { return s.Secrets(ctx, ref) }
}

// document returns the cached document at path, reading the backend when
// the cache entry is missing or expired.
func (s *Store) document(ctx context.Context, path string) (*document, string, error) {
	now := s.opts.now()
	s.mu.Lock()
	e := s.cache[path]
	var cached *entry
	if e != nil {
		c := *e
		cached = &c
	}
	s.mu.Unlock()
	if cached != nil {
		if now.Sub(cached.fetched) < s.backend.cacheTTL() {
			return cached.doc, ResultHit, nil
		}
		if now.Before(cached.retry) {
			return cached.doc, ResultStale, nil
		}
	}

	doc, err := s.fetch(ctx, path)
	switch {
	case err == nil:
		return doc, ResultMiss, nil // cached by fetch
	case errors.Is(err, errNotFound):
		s.mu.Lock()
		delete(s.cache, path)
		s.mu.Unlock()
		return nil, "", hookgate.WrapError(hookgate.ENotFound, fmt.Sprintf("secret %q not found", path), err)
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the backend.
		if cached != nil {
			return cached.doc, ResultStale, nil
		}
		return nil, "", hookgate.WrapError(hookgate.EUnavailable, fmt.Sprintf("read secret %q", path), ctx.Err())
	case cached != nil:
		s.mu.Lock()
		if cur := s.cache[path]; cur != nil {
			cur.retry = s.opts.now().Add(s.retryDelay())
		}
		if !s.outage {
			s.outage = true
			s.opts.log.Warn("secret store unavailable, serving cached secrets", "path", path, "cached_at", cached.fetched, "err", err)
		}
		s.mu.Unlock()
		return cached.doc, ResultStale, nil
	default:
		return nil, "", hookgate.WrapError(hookgate.EUnavailable, fmt.Sprintf("read secret %q", path), err)
	}
}

// retryDelay is how long a stale entry is served without asking the
// backend again after a failed refresh, so that an outage does not make
// every request wait for a timeout. A backend without cache TTL (the file)
// is cheap to ask: it is asked every time.
func (s *Store) retryDelay() time.Duration {
	return min(s.backend.cacheTTL(), 5*time.Second)
}

// fetch reads path from the backend, one read at a time per path: callers
// arriving while a read runs share its result. The read is not cancelled
// when one caller gives up; it has its own deadline, and its result is
// cached even when every caller has gone.
func (s *Store) fetch(ctx context.Context, path string) (*document, error) {
	ch := s.flight.DoChan(path, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*s.timeout)
		defer cancel()
		doc, err := s.backend.read(rctx, path, s.opts.now())
		if err == nil {
			s.mu.Lock()
			if s.outage {
				s.outage = false
				s.opts.log.Info("secret store reachable again", "path", path)
			}
			s.cache[path] = &entry{doc: doc, fetched: s.opts.now()}
			s.mu.Unlock()
		}
		return doc, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*document), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Redact returns text with every secret value this store has served (and
// its URL- and JSON-escaped forms) replaced by "[redacted]".
func (s *Store) Redact(text string) string { return s.red.Redact(text) }

// Check reports whether the backend is reachable (readiness). Its error is
// an *hookgate.Error with code EUnavailable.
func (s *Store) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.backend.check(ctx); err != nil {
		return hookgate.WrapError(hookgate.EUnavailable, "secret store", err)
	}
	return nil
}

// Close stops background work (the Vault token's lifetime watcher).
func (s *Store) Close() error { return s.backend.close() }
