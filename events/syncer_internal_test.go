package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
)

// stubSync is a syncer's fsync under the test's control: each round
// announces itself on started and returns what the test sends on result.
type stubSync struct {
	started chan struct{}
	result  chan error
}

func newStub() *stubSync {
	return &stubSync{started: make(chan struct{}), result: make(chan error)}
}

func (st *stubSync) sync() error {
	st.started <- struct{}{}
	return <-st.result
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

func waitAsync(s *syncer, ctx context.Context, seq uint64) chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.wait(ctx, seq) }()
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

// TestSyncerCovers checks group commit's rule: a waiter returns only after
// a round that noted its sequence (began after its PubAck) completed; a
// round that began before it does not release it; a failed round answers
// its waiters with the error and covers nothing; a covered sequence
// returns at once; sequence 0 waits for a round begun after the call.
func TestSyncerCovers(t *testing.T) {
	st := newStub()
	s := startSyncer(t.TempDir(), st.sync)
	defer s.stop()
	ctx := context.Background()

	// seq 3: its PubAck starts round 1, which notes 3
	a := waitAsync(s, ctx, 3)
	st.roundStarted(t)
	// seq 5 is acknowledged while round 1 runs: round 1 does not cover it
	b := waitAsync(s, ctx, 5)
	notDone(t, a, "wait(3) during its round")
	st.result <- nil
	doneWith(t, a, "wait(3)", nil)
	st.roundStarted(t) // round 2, for 5
	notDone(t, b, "wait(5) after the round that began before its PubAck")
	// round 2 fails: its waiter is told, nothing more is covered
	disk := errors.New("disk on fire")
	st.result <- disk
	doneWith(t, b, "wait(5) after a failed fsync", disk)
	s.mu.Lock()
	synced := s.synced
	s.mu.Unlock()
	if synced != 3 {
		t.Fatalf("synced = %d after a failed round; want 3", synced)
	}

	// covered: at once, no round
	doneWith(t, waitAsync(s, ctx, 2), "wait(2), covered", nil)
	doneWith(t, waitAsync(s, ctx, 3), "wait(3), covered", nil)

	// 4 is acknowledged (5 was): the next round covers both
	c := waitAsync(s, ctx, 4)
	st.roundStarted(t)
	notDone(t, c, "wait(4) during its round")
	st.result <- nil
	doneWith(t, c, "wait(4)", nil)

	// sequence 0 (unknown): a round that began after the call, even
	// though everything acknowledged is covered
	d := waitAsync(s, ctx, 0)
	st.roundStarted(t)
	notDone(t, d, "wait(0) during its round")
	st.result <- nil
	doneWith(t, d, "wait(0)", nil)

	// a waiter whose context ends gets its context's error
	cctx, cancel := context.WithCancel(ctx)
	e := waitAsync(s, cctx, 9)
	st.roundStarted(t)
	cancel()
	doneWith(t, e, "wait(9) with its context cancelled", context.Canceled)
	st.result <- nil
	s.stop() // the round has counted itself
	if s.syncs.Load() != 5 {
		t.Errorf("%d rounds; want 5", s.syncs.Load())
	}
}

// TestSyncerStopReleasesWaiters: a waiter is answered when the bus closes
// while its fsync has not come.
func TestSyncerStopReleasesWaiters(t *testing.T) {
	st := newStub()
	s := startSyncer(t.TempDir(), st.sync)
	a := waitAsync(s, context.Background(), 1)
	st.roundStarted(t)
	go func() { st.result <- nil }()
	doneWith(t, a, "wait(1)", nil)
	b := waitAsync(s, context.Background(), 2)
	st.roundStarted(t)
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case err := <-b:
		if err == nil {
			t.Fatal("wait(2) returned nil while its fsync never completed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait(2) not released by stop")
	}
	st.result <- errors.New("stopped")
	<-stopped
}

// TestSyncerCountsInboundSequences: the PubAck callback raises the
// syncer's sequence only for the inbound stream. A jobs or KV stream's
// sequence (ahead of the inbound one) would let a waiter through
// without the fsync that covers its event.
func TestSyncerCountsInboundSequences(t *testing.T) {
	cfg := config.Default().Bus
	cfg.Sync = "group"
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, err := Open(context.Background(), cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	var last jetstream.PubAckFuture
	for i := range 50 {
		if last, err = b.js.PublishAsync("other.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-last.Ok():
	case err := <-last.Err():
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("no PubAck from OTHER")
	}
	if _, err := b.Publish(ctx, "hookgate.in.b24.PROBE", "probe-1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if got := b.sy.acked.Load(); got != 1 {
		t.Errorf("syncer's acknowledged sequence = %d after 50 messages to OTHER and 1 to %s; want 1", got, cfg.Stream)
	}
}
