package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
)

// fakeBackend is a backend whose read is a function field.
type fakeBackend struct {
	readFn func(ctx context.Context, path string, now time.Time) (*document, error)
	ttl    time.Duration
	reads  atomic.Int64
}

func (f *fakeBackend) read(ctx context.Context, path string, now time.Time) (*document, error) {
	f.reads.Add(1)
	return f.readFn(ctx, path, now)
}
func (f *fakeBackend) check(context.Context) error { return nil }
func (f *fakeBackend) cacheTTL() time.Duration     { return f.ttl }
func (f *fakeBackend) close() error                { return nil }

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// results records observer calls.
type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) observe(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *results) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func testStore(b backend, clock *fakeClock, obs *results, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return newStore(b, options{now: clock.Now, log: log, observe: obs.observe}, hookgate.NewRedactor(), time.Second)
}

func doc(vals ...string) *document {
	d := &document{}
	for i, v := range vals {
		ver := version{number: len(vals) - i, data: map[string]string{"token": v}}
		if i > 0 {
			ver.until = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		d.versions = append(d.versions, ver)
	}
	return d
}

func reveal(ss []hookgate.Secret) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Reveal()
	}
	return out
}

// TestCacheAndOutage walks one path through the store's states with a fake
// backend: cold read, hit, refresh, stale during an outage, recovery.
func TestCacheAndOutage(t *testing.T) {
	clock := &fakeClock{now: time.Date(2029, 6, 1, 12, 0, 0, 0, time.UTC)}
	var down atomic.Bool
	current := atomic.Value{}
	current.Store("value-one")
	b := &fakeBackend{ttl: time.Second, readFn: func(_ context.Context, path string, _ time.Time) (*document, error) {
		if down.Load() {
			return nil, errors.New("vault: connection refused")
		}
		if path != "app/token" {
			return nil, fmt.Errorf("%w: %s", errNotFound, path)
		}
		return doc(current.Load().(string)), nil
	}}
	var logBuf strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logBuf}, nil))
	obs := &results{}
	s := testStore(b, clock, obs, log)
	ctx := context.Background()

	steps := []struct {
		name     string
		before   func()
		ref      string
		want     string
		wantCode string
		result   string
		reads    int64 // backend reads so far
	}{
		{name: "cold", ref: "app/token", want: "value-one", result: ResultMiss, reads: 1},
		{name: "hit", ref: "app/token#token", want: "value-one", result: ResultHit, reads: 1},
		{name: "rotated, still cached", before: func() { current.Store("value-two") }, ref: "app/token", want: "value-one", result: ResultHit, reads: 1},
		{name: "expired, refreshed", before: func() { clock.Add(time.Second) }, ref: "app/token", want: "value-two", result: ResultMiss, reads: 2},
		{name: "down, stale served", before: func() { down.Store(true); clock.Add(2 * time.Second) }, ref: "app/token", want: "value-two", result: ResultStale, reads: 3},
		{name: "down, no retry within delay", ref: "app/token", want: "value-two", result: ResultStale, reads: 3},
		{name: "down, cold miss", ref: "other/token", wantCode: hookgate.EUnavailable, result: ResultError, reads: 4},
		{name: "down, missing field of cached path", ref: "app/token#nope", wantCode: hookgate.ENotFound, result: ResultError, reads: 4},
		{name: "up again", before: func() { down.Store(false); clock.Add(2 * time.Second) }, ref: "app/token", want: "value-two", result: ResultMiss, reads: 5},
		{name: "not found", ref: "other/token", wantCode: hookgate.ENotFound, result: ResultError, reads: 6},
		{name: "bad reference", ref: "/abs", wantCode: hookgate.ENotFound, result: ResultError, reads: 6},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		got, err := s.Secret(ctx, st.ref)
		if code := hookgate.ErrorCode(err); code != st.wantCode {
			t.Fatalf("%s: Secret(%q) error %v (code %q); want code %q", st.name, st.ref, err, code, st.wantCode)
		}
		if got.Reveal() != st.want {
			t.Errorf("%s: Secret(%q) = %q; want %q", st.name, st.ref, got.Reveal(), st.want)
		}
		if diff := cmp.Diff([]string{st.result}, obs.take()); diff != "" {
			t.Errorf("%s: observer results (-want +got):\n%s", st.name, diff)
		}
		if n := b.reads.Load(); n != st.reads {
			t.Errorf("%s: backend reads = %d; want %d", st.name, n, st.reads)
		}
	}
	logMu.Lock()
	logs := logBuf.String()
	logMu.Unlock()
	if n := strings.Count(logs, "serving cached secrets"); n != 1 {
		t.Errorf("stale warnings logged %d times; want once:\n%s", n, logs)
	}
	for _, v := range []string{"value-one", "value-two"} {
		if strings.Contains(logs, v) {
			t.Errorf("log holds secret value %q:\n%s", v, logs)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestColdMissesShareOneRead checks that concurrent cold misses for one
// path make one backend read.
func TestColdMissesShareOneRead(t *testing.T) {
	release := make(chan struct{})
	b := &fakeBackend{ttl: time.Minute, readFn: func(context.Context, string, time.Time) (*document, error) {
		<-release
		return doc("shared-value"), nil
	}}
	s := testStore(b, &fakeClock{now: time.Now()}, &results{}, nil)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.Secret(context.Background(), "a/b")
			if err == nil && v.Reveal() != "shared-value" {
				err = fmt.Errorf("got %q", v.Reveal())
			}
			errs <- err
		}()
	}
	// Let the goroutines pile up on the read before it answers.
	for b.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Secret: %v", err)
		}
	}
	if got := b.reads.Load(); got != 1 {
		t.Errorf("backend reads = %d; want 1", got)
	}
}

// TestCallerCancelDoesNotCancelSharedRead checks that a caller giving up
// neither fails the others nor poisons the cache.
func TestCallerCancelDoesNotCancelSharedRead(t *testing.T) {
	release := make(chan struct{})
	b := &fakeBackend{ttl: time.Minute, readFn: func(ctx context.Context, _ string, _ time.Time) (*document, error) {
		select {
		case <-release:
			return doc("patient-value"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	s := testStore(b, &fakeClock{now: time.Now()}, &results{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Secret(ctx, "a/b")
	if code := hookgate.ErrorCode(err); code != hookgate.EUnavailable || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Secret with expiring ctx: %v; want EUnavailable wrapping DeadlineExceeded", err)
	}
	close(release)
	// the abandoned read finishes in the background and fills the cache;
	// a caller now either joins it or finds its result
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		_, cached := s.cache["a/b"]
		s.mu.Unlock()
		if cached || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	v, err := s.Secret(context.Background(), "a/b")
	if err != nil || v.Reveal() != "patient-value" {
		t.Fatalf("Secret after release = %q, %v; want patient-value", v.Reveal(), err)
	}
	if got := b.reads.Load(); got != 1 {
		t.Errorf("backend reads = %d; want 1 (the abandoned read finished and was shared)", got)
	}
}

func TestDocumentValues(t *testing.T) {
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &document{versions: []version{
		{number: 4, data: map[string]string{"token": "v4", "other": "o4"}},
		{number: 3, data: map[string]string{"token": "v3"}, until: now.Add(time.Hour)},
		{number: 2, data: map[string]string{"other": "o2"}, until: now.Add(time.Minute)},
		{number: 1, data: map[string]string{"token": "v1"}, until: now}, // expired at now
	}}
	tests := []struct {
		name  string
		field string
		want  []string
		ok    bool
	}{
		{"token", "token", []string{"v4", "v3"}, true},
		{"other", "other", []string{"o4", "o2"}, true},
		{"missing", "nope", nil, false},
	}
	for _, tc := range tests {
		got, ok := d.values(tc.field, now)
		if ok != tc.ok {
			t.Errorf("values(%s) ok = %v; want %v", tc.name, ok, tc.ok)
		}
		if diff := cmp.Diff(tc.want, reveal(got)); ok && diff != "" {
			t.Errorf("values(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
}
