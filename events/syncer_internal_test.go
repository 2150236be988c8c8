package events

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stubSync is a syncer's fsync under the test's control: each round
// announces itself on started and returns what the test sends on result.
type stubSync struct {
	started chan struct{}
	result  chan error
	end     chan struct{} // closed when the test is over: rounds fail at once
}

// startStubbed starts a syncer on a stub; at the test's end the stub's
// rounds fail at once and the syncer stops, so that a test that fails
// midway does not hang.
func startStubbed(t *testing.T) (*syncer, *stubSync) {
	st := &stubSync{started: make(chan struct{}), result: make(chan error), end: make(chan struct{})}
	s := startSyncer(t.TempDir(), st.sync)
	t.Cleanup(func() {
		close(st.end)
		s.stop()
	})
	return s, st
}

func (st *stubSync) sync() error {
	select {
	case st.started <- struct{}{}:
	case <-st.end:
		return errors.New("test over")
	}
	select {
	case err := <-st.result:
		return err
	case <-st.end:
		return errors.New("test over")
	}
}

// roundStarted waits for the syncer's next round to begin.
func (st *stubSync) roundStarted(t *testing.T) {
	t.Helper()
	select {
	case <-st.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync round began")
	}
}

func waitAsync(s *syncer, ctx context.Context) chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.wait(ctx) }()
	return ch
}

func notDone(t *testing.T, ch chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v) before the fsync that covers it", what, err)
	case <-time.After(30 * time.Millisecond):
	}
}

func doneWith(t *testing.T, ch chan error, what string, want error) {
	t.Helper()
	select {
	case err := <-ch:
		if !errors.Is(err, want) {
			t.Fatalf("%s = %v; want %v", what, err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// registered waits until n waiters have joined the syncer's next round.
func registered(t *testing.T, s *syncer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		ok := s.next != nil && s.next.waiters == n
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters never joined the next round", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSyncerCovers checks group commit's rule: a waiter returns only after
// an fsync that began after it asked completed; the fsync running when it
// asked does not release it; every waiter of a round is released by it; a
// failed fsync answers its waiters with the error, and the next waiters
// get a new fsync.
func TestSyncerCovers(t *testing.T) {
	s, st := startStubbed(t)
	ctx := context.Background()

	a := waitAsync(s, ctx)
	st.roundStarted(t) // round 1, for a
	// b and c ask while round 1 runs: round 1 began before them
	b := waitAsync(s, ctx)
	c := waitAsync(s, ctx)
	registered(t, s, 2)
	notDone(t, a, "wait (a) during its fsync")
	st.result <- nil
	doneWith(t, a, "wait (a)", nil)
	st.roundStarted(t) // round 2, for b and c together
	notDone(t, b, "wait (b) after the fsync that began before it")
	notDone(t, c, "wait (c) after the fsync that began before it")
	// round 2 fails: both are told
	disk := errors.New("disk on fire")
	st.result <- disk
	doneWith(t, b, "wait (b) after a failed fsync", disk)
	doneWith(t, c, "wait (c) after a failed fsync", disk)

	// after a failure the next waiter gets an fsync of its own
	d := waitAsync(s, ctx)
	st.roundStarted(t)
	notDone(t, d, "wait (d) during its fsync")
	st.result <- nil
	doneWith(t, d, "wait (d)", nil)

	// a waiter whose context ends gets its context's error
	cctx, cancel := context.WithCancel(ctx)
	e := waitAsync(s, cctx)
	st.roundStarted(t)
	cancel()
	doneWith(t, e, "wait (e) with its context cancelled", context.Canceled)
	st.result <- nil
	s.stop() // the round has counted itself
	if s.syncs.Load() != 4 {
		t.Errorf("%d fsync rounds; want 4 (a, b+c, d, e)", s.syncs.Load())
	}
}

// TestSyncerStopReleasesWaiters: a waiter is answered when the bus closes
// while its fsync has not come.
func TestSyncerStopReleasesWaiters(t *testing.T) {
	s, st := startStubbed(t)
	a := waitAsync(s, context.Background())
	st.roundStarted(t)
	go func() { st.result <- nil }()
	doneWith(t, a, "wait (a)", nil)
	b := waitAsync(s, context.Background())
	st.roundStarted(t)
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case err := <-b:
		if err == nil {
			t.Fatal("wait (b) returned nil while its fsync never completed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait (b) not released by stop")
	}
	st.result <- errors.New("stopped")
	<-stopped
}
