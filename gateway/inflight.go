package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/hookgate/hookgate"
)

// largeBody is the size from which a body counts against
// server.max_inflight_bytes. Smaller ones (almost every webhook) skip the
// budget: their cost is bounded by the connection count.
const largeBody = 64 << 10

// trimAfter is how long after the last large body, once a burst of them
// went through, the gateway hands unused memory back (Deps.Trim).
const trimAfter = 5 * time.Second

// trimBurst is how many large-body bytes make a burst worth a trim.
const trimBurst = 32 << 20

// inflight is the budget of large bodies being worked on at once: each
// costs about five times its size until it is stored (the raw body, its
// redacted copy, the event, which holds it twice), so the budget bounds
// the memory a burst of them can take.
type inflight struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
	trim func()

	busy  atomic.Int64 // bytes held now
	mu    sync.Mutex
	since int64       // large-body bytes since the last trim
	timer *time.Timer // the pending trim
}

func newInflight(size int64, wait time.Duration, trim func()) *inflight {
	return &inflight{sem: semaphore.NewWeighted(size), size: size, wait: wait, trim: trim}
}

// reserve takes n bytes of the budget, waiting up to the publish timeout
// for room; it answers 503 (Retry-After) when none comes. The returned
// function gives them back.
func (f *inflight) reserve(ctx context.Context, n int64) (func(), error) {
	n = min(n, f.size) // a body over the whole budget goes alone
	ctx, cancel := context.WithTimeout(ctx, f.wait)
	defer cancel()
	if err := f.sem.Acquire(ctx, n); err != nil {
		return nil, hookgate.Errorf(hookgate.EUnavailable, "too many large bodies in flight")
	}
	f.busy.Add(n)
	return func() {
		f.busy.Add(-n)
		f.sem.Release(n)
		f.done(n)
	}, nil
}

// done notes n bytes finished and, after a burst, arms the trim for when
// the gateway has been without large bodies for trimAfter.
func (f *inflight) done(n int64) {
	if f.trim == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since += n
	if f.since < trimBurst {
		return
	}
	if f.timer == nil {
		f.timer = time.AfterFunc(trimAfter, f.fire)
	} else {
		f.timer.Reset(trimAfter)
	}
}

func (f *inflight) fire() {
	f.mu.Lock()
	if f.busy.Load() > 0 { // still busy: try again later
		f.timer.Reset(trimAfter)
		f.mu.Unlock()
		return
	}
	f.since = 0
	f.mu.Unlock()
	f.trim()
}
