package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// order records the payloads a handler saw, per key.
type order struct {
	mu   sync.Mutex
	keys map[string][]string
}

func (o *order) add(j *Job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys == nil {
		o.keys = map[string][]string{}
	}
	for _, c := range j.Covers {
		o.keys[c.Key] = append(o.keys[c.Key], strings.Trim(string(c.Payload), `"`))
	}
	o.keys[j.Key] = append(o.keys[j.Key], strings.Trim(string(j.Payload), `"`))
}

func (o *order) of(key string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.keys[key]...)
}

func (o *order) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, v := range o.keys {
		n += len(v)
	}
	return n
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// TestNoKeyBlocksAnother: with a single partition, a key whose head waits
// an hour for its retry holds back only its own later jobs; every other
// key runs at once. Under the old design (the waiting job at the head of
// its partition) nothing else on the partition ran for the hour.
func TestNoKeyBlocksAnother(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	clk := &clock{}
	var parked parkings
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{time.Hour}, Partitions: 1, Recheck: 50 * time.Millisecond},
		WithClock(clk.Now), WithObserver(Observer{Parked: parked.observe}))
	var got order
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, clk.Now())
		if j.Key == "deal/13" && string(j.Payload) == `"bad0"` && attempt == 1 {
			return errDown
		}
		got.add(j)
		return nil
	})
	enqueue(t, q, Job{ID: "bad-0", Key: "deal/13", Payload: str("bad0")})
	eventually(t, 5*time.Second, "the bad head's first attempt", func() bool { return len(rec.of("bad-0")) == 1 })
	for i := range 5 {
		enqueue(t, q, Job{ID: "bad-" + strconv.Itoa(i+1), Key: "deal/13", Payload: str("bad" + strconv.Itoa(i+1))})
	}
	for i := range 30 {
		enqueue(t, q, Job{ID: "other-" + strconv.Itoa(i), Key: fmt.Sprintf("deal/%d", 100+i), Payload: str("o")})
	}
	eventually(t, 10*time.Second, "every other key", func() bool { return got.count() == 30 })
	parked.after(t, "bad-5", time.Time{})
	if n := len(got.of("deal/13")); n != 0 {
		t.Fatalf("deal/13 jobs run while its head waits = %d; want 0", n)
	}
	if p := pending(t, q); p != 6 {
		t.Errorf("Pending = %d; want 6 (the head and 5 behind it)", p)
	}
	clk.Advance(time.Hour)
	eventually(t, 10*time.Second, "deal/13 after its retry", func() bool { return len(got.of("deal/13")) == 6 })
	if diff := cmp.Diff(seq("bad", 6), got.of("deal/13")); diff != "" {
		t.Errorf("deal/13 order (-want +got):\n%s", diff)
	}
	eventually(t, 5*time.Second, "empty queue", func() bool { return pending(t, q) == 0 })
}

// TestDeadHeadReleasesFollowers: once the head's schedule is spent it is
// dead-lettered and the jobs behind it run, in order.
func TestDeadHeadReleasesFollowers(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, Partitions: 2})
	var got order
	started := make(chan struct{}, 10)
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		if j.ID == "head" {
			started <- struct{}{}
			return errDown
		}
		got.add(j)
		return nil
	})
	enqueue(t, q, Job{ID: "head", Key: "k", Payload: str("h")})
	<-started
	for i := range 4 {
		enqueue(t, q, Job{ID: "f" + strconv.Itoa(i), Key: "k", Payload: str("f" + strconv.Itoa(i))})
	}
	eventually(t, 10*time.Second, "followers", func() bool { return len(got.of("k")) == 4 })
	if diff := cmp.Diff(seq("f", 4), got.of("k")); diff != "" {
		t.Errorf("order behind a dead head (-want +got):\n%s", diff)
	}
	d := deadJobs(t, q)
	if len(d) != 1 || d[0].Job.ID != "head" || d[0].Attempts != 3 {
		t.Errorf("Dead = %+v; want head after 3 attempts", d)
	}
}

// TestCoalesce: jobs that coalesce and wait behind a running head are
// covered by one run of the latest; jobs that do not coalesce run one by
// one. A failed coalesced run retries the whole group.
func TestCoalesce(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	var coalesced sync.Map
	var parked parkings
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{50 * time.Millisecond}, Partitions: 2},
		WithObserver(Observer{Coalesced: func(j *Job, n int) { coalesced.Store(j.ID, n) }, Parked: parked.observe}))
	release, started := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var runs [][]string
	failed := false
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		if j.ID == "c0" {
			close(started)
			<-release
		}
		var ids []string
		for _, c := range j.Covers {
			ids = append(ids, c.ID)
		}
		ids = append(ids, j.ID)
		mu.Lock()
		defer mu.Unlock()
		if len(ids) > 1 && !failed {
			failed = true
			return errDown
		}
		runs = append(runs, ids)
		return nil
	})
	enqueue(t, q, Job{ID: "c0", Kind: "route", Key: "k", Coalesce: true})
	<-started
	for i := 1; i <= 4; i++ {
		enqueue(t, q, Job{ID: "c" + strconv.Itoa(i), Kind: "route", Key: "k", Coalesce: true})
	}
	enqueue(t, q, Job{ID: "plain", Kind: "route", Key: "k"})
	enqueue(t, q, Job{ID: "c5", Kind: "route", Key: "k", Coalesce: true})
	parked.after(t, "c5", time.Time{}) // the last is parked behind c0
	if p := pending(t, q); p != 7 {
		t.Errorf("Pending with c0 running = %d; want 7", p)
	}
	close(release)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(runs)
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("runs after 10s: %v", runs)
		}
	}
	want := [][]string{{"c0"}, {"c1", "c2", "c3", "c4"}, {"plain"}, {"c5"}}
	mu.Lock()
	if diff := cmp.Diff(want, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	mu.Unlock()
	if n, _ := coalesced.Load("c4"); n != 4 {
		t.Errorf("Coalesced(c4) = %v; want 4", n)
	}
	eventually(t, 5*time.Second, "empty queue", func() bool { return pending(t, q) == 0 })
}

// str is s as a JSON payload.
func str(s string) []byte { return []byte(strconv.Quote(s)) }

// TestLegacyRetryState: a job stored by the version before lanes, with
// its retry state in the state bucket (attempt 1 made, next attempt an
// hour away), keeps it: it is not run before the clock reaches next_at,
// and then runs as attempt 2.
func TestLegacyRetryState(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	clk := &clock{}
	ctx := context.Background()
	// the old version's state, written before the queue starts
	first := newQueue(t, bus.JetStream(), Config{Partitions: 1})
	b, _ := json.Marshal(oldState{Attempt: 1, NextAt: clk.Now().Add(time.Hour), LastError: "portal down", FirstAt: clk.Now()})
	if _, err := first.state.Put(ctx, kvKey("old-1"), b); err != nil {
		t.Fatal(err)
	}
	var parked parkings
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{time.Hour, time.Hour}, Partitions: 1, Recheck: 50 * time.Millisecond},
		WithClock(clk.Now), WithObserver(Observer{Parked: parked.observe}))
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error { rec.add(ctx, j, attempt, clk.Now()); return nil })
	enqueue(t, q, Job{ID: "old-1", Key: "k"})
	parked.after(t, "old-1", clk.Now())
	if n := len(rec.of("old-1")); n != 0 {
		t.Fatalf("runs before next_at = %d; want 0", n)
	}
	clk.Advance(time.Hour)
	eventually(t, 5*time.Second, "the retry", func() bool { return len(rec.of("old-1")) == 1 })
	if c := rec.of("old-1")[0]; c.attempt != 2 {
		t.Errorf("attempt = %d; want 2 (the old state's one, plus one)", c.attempt)
	}
	if _, err := q.state.Get(ctx, kvKey("old-1")); err == nil {
		t.Error("the old state entry is still there")
	}
}
