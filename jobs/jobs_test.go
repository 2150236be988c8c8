package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

func testLogger() *slog.Logger {
	if os.Getenv("HOOKGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// openBus starts a real embedded NATS server with JetStream under dir.
func openBus(t *testing.T, dir string) *events.Bus {
	t.Helper()
	b, _ := openBusAt(t, dir)
	return b
}

// openBusAt is openBus that also returns the client URL.
func openBusAt(t *testing.T, dir string) (*events.Bus, string) {
	t.Helper()
	cfg := config.Default().Bus
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := events.Open(ctx, cfg, dir, events.WithLogger(testLogger()))
	if err != nil {
		t.Fatalf("events.Open: %v", err)
	}
	url, err := events.TokenURL(cfg.Listen, dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, url
}

// clock is an injectable clock: real time plus an offset the test moves.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// parkings records the queue's wake-ups (Observer.Parked): a test that
// must show nothing runs before the clock moves waits until the queue
// has looked at the clock and parked the job, instead of sleeping.
type parkings struct {
	mu   sync.Mutex
	list []parking
}

type parking struct {
	id        string
	now, next time.Time
}

func (p *parkings) observe(j *Job, now, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, parking{j.ID, now, next})
}

// after waits until job id is parked by a look at the clock at or after
// at, and returns that parking.
func (p *parkings) after(t *testing.T, id string, at time.Time) parking {
	t.Helper()
	var got parking
	eventually(t, 5*time.Second, "job "+id+" parked at or after "+at.Format(time.RFC3339Nano), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, k := range p.list {
			if k.id == id && !k.now.Before(at) {
				got = k
				return true
			}
		}
		return false
	})
	return got
}

// runner runs a queue in the background until stopped.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func run(t *testing.T, q *Queue, h Handler) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- q.Run(ctx, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runner) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v; want nil after cancel", err)
		}
		r.done <- nil // later stops return at once
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func newQueue(t *testing.T, js jetstream.JetStream, cfg Config, opts ...Option) *Queue {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger())}, opts...)
	q, err := New(context.Background(), js, cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return q
}

func enqueue(t *testing.T, q *Queue, jobs ...Job) {
	t.Helper()
	for _, j := range jobs {
		if err := q.Enqueue(context.Background(), j); err != nil {
			t.Fatalf("Enqueue(%s): %v", j.ID, err)
		}
	}
}

// pending is q.Pending; an error fails the test rather than read as an
// empty queue.
func pending(t *testing.T, q *Queue) int {
	t.Helper()
	n, err := q.Pending(context.Background())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return n
}

// deadJobs is q.Dead; an error fails the test.
func deadJobs(t *testing.T, q *Queue) []DeadJob {
	t.Helper()
	d, err := q.Dead(context.Background())
	if err != nil {
		t.Fatalf("Dead: %v", err)
	}
	return d
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attempts records handler calls.
type attempts struct {
	mu    sync.Mutex
	calls []call
}

type call struct {
	id      string
	attempt int
	at      time.Time
	last    bool
}

func (a *attempts) add(ctx context.Context, j *Job, attempt int, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, call{id: j.ID, attempt: attempt, at: at, last: LastAttempt(ctx)})
}

func (a *attempts) of(id string) []call {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []call
	for _, c := range a.calls {
		if c.id == id {
			out = append(out, c)
		}
	}
	return out
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

var errDown = errors.New("portal down")

func TestScheduleFollowed(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	clk := &clock{}
	sched := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	var deadSeen atomic.Int32
	q := newQueue(t, bus.JetStream(), Config{Schedule: sched, Partitions: 2}, WithClock(clk.Now),
		WithObserver(Observer{Dead: func(DeadJob) { deadSeen.Add(1) }}))
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, clk.Now())
		return errDown
	})
	enqueue(t, q, Job{ID: "sched-1", Kind: "test", Key: "deal/1"})
	eventually(t, 10*time.Second, "dead letter", func() bool { return deadSeen.Load() == 1 })

	calls := rec.of("sched-1")
	if len(calls) != len(sched)+1 {
		t.Fatalf("attempts = %d; want %d", len(calls), len(sched)+1)
	}
	for i, c := range calls {
		if c.attempt != i+1 {
			t.Errorf("call %d: attempt = %d; want %d", i, c.attempt, i+1)
		}
		if want := i == len(sched); c.last != want {
			t.Errorf("call %d: LastAttempt = %v; want %v", i, c.last, want)
		}
		if i == 0 {
			continue
		}
		gap := c.at.Sub(calls[i-1].at)
		t.Logf("attempt %d after %v (schedule %v)", c.attempt, gap, sched[i-1])
		if gap < sched[i-1] {
			t.Errorf("attempt %d came %v after the previous; want at least %v", c.attempt, gap, sched[i-1])
		}
		if gap > sched[i-1]+time.Second {
			t.Errorf("attempt %d came %v after the previous; want about %v", c.attempt, gap, sched[i-1])
		}
	}
	dead, err := q.Dead(context.Background())
	if err != nil {
		t.Fatalf("Dead: %v", err)
	}
	if len(dead) != 1 || dead[0].Attempts != 4 || dead[0].LastError != errDown.Error() || dead[0].Job.Key != "deal/1" {
		t.Errorf("Dead = %+v; want sched-1 after 4 attempts with %q", dead, errDown)
	}
	eventually(t, 5*time.Second, "empty queue", func() bool { return pending(t, q) == 0 })
}

// TestInjectedClock shows the schedule is judged by the injected clock:
// a one-hour retry runs once the clock has moved an hour, not before.
func TestInjectedClock(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	clk := &clock{}
	var parked parkings
	q := newQueue(t, bus.JetStream(), Config{
		Schedule: []time.Duration{time.Hour, 6 * time.Hour}, Partitions: 1, Recheck: 20 * time.Millisecond,
	}, WithClock(clk.Now), WithObserver(Observer{Parked: parked.observe}))
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, clk.Now())
		if attempt < 3 {
			return errDown
		}
		return nil
	})
	enqueue(t, q, Job{ID: "clock-1", Key: "k"})
	eventually(t, 5*time.Second, "first attempt", func() bool { return len(rec.of("clock-1")) == 1 })
	// The queue looks at the clock again (a recheck) and parks the job
	// for the hour: only then is "not run again" a fact, not a hope.
	first := rec.of("clock-1")[0].at
	k := parked.after(t, "clock-1", clk.Now())
	if k.next.Before(first.Add(time.Hour)) {
		t.Errorf("parked until %v; want an hour after the first attempt (%v)", k.next, first.Add(time.Hour))
	}
	if n := len(rec.of("clock-1")); n != 1 {
		t.Fatalf("attempts before the clock moved = %d; want 1", n)
	}
	clk.Advance(59 * time.Minute)
	parked.after(t, "clock-1", clk.Now())
	if n := len(rec.of("clock-1")); n != 1 {
		t.Fatalf("attempts 59 minutes on = %d; want 1", n)
	}
	clk.Advance(time.Minute)
	eventually(t, 5*time.Second, "second attempt", func() bool { return len(rec.of("clock-1")) == 2 })
	clk.Advance(6 * time.Hour)
	eventually(t, 5*time.Second, "third attempt", func() bool { return len(rec.of("clock-1")) == 3 })
	eventually(t, 5*time.Second, "empty queue", func() bool { return pending(t, q) == 0 })
}

func TestRetryAfterAndPermanent(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{time.Hour}, Partitions: 2, Recheck: 50 * time.Millisecond})
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, time.Now())
		switch {
		case j.ID == "perm":
			return Permanent(errors.New("method not found"))
		case attempt == 1:
			return RetryAfter(150*time.Millisecond, errors.New("429"))
		}
		return nil
	})
	enqueue(t, q, Job{ID: "perm", Key: "a"}, Job{ID: "later", Key: "b"})
	eventually(t, 5*time.Second, "retry after", func() bool { return len(rec.of("later")) == 2 })
	c := rec.of("later")
	if gap := c[1].at.Sub(c[0].at); gap < 150*time.Millisecond || gap > time.Second {
		t.Errorf("retry after Retry-After 150ms came after %v", gap)
	}
	eventually(t, 5*time.Second, "dead", func() bool { return len(deadJobs(t, q)) == 1 })
	if n := len(rec.of("perm")); n != 1 {
		t.Errorf("permanent failure attempts = %d; want 1", n)
	}
	d, err := q.DeadJob(context.Background(), "perm")
	if err != nil || d.Attempts != 1 || d.LastError != "method not found" {
		t.Errorf("DeadJob(perm) = %+v, %v; want 1 attempt, method not found", d, err)
	}
}

func TestOrderPerKey(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{30 * time.Millisecond, time.Hour}, Partitions: 4})
	// Find a key on another partition than "deal/9" for the failing one.
	bad := ""
	for i := 0; bad == ""; i++ {
		if k := "deal/bad" + strconv.Itoa(i); q.Partition(k) != q.Partition("deal/9") {
			bad = k
		}
	}
	var mu sync.Mutex
	var order []int
	others := map[string]time.Time{}
	var badCalls atomic.Int32
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		switch {
		case j.Key == bad:
			badCalls.Add(1)
			return errDown
		case j.Key == "deal/9":
			n, _ := strconv.Atoi(string(j.Payload))
			if n == 5 && attempt == 1 {
				return errDown // one failure in the middle must not reorder
			}
			mu.Lock()
			order = append(order, n)
			mu.Unlock()
		default:
			mu.Lock()
			others[j.ID] = time.Now()
			mu.Unlock()
		}
		return nil
	})
	enqueue(t, q, Job{ID: "bad-1", Key: bad})
	for i := range 20 {
		enqueue(t, q, Job{ID: fmt.Sprintf("deal9-%d", i), Key: "deal/9", Payload: []byte(strconv.Itoa(i))})
	}
	for i := range 10 {
		enqueue(t, q, Job{ID: fmt.Sprintf("other-%d", i), Key: fmt.Sprintf("deal/other%d", i)})
	}
	eventually(t, 10*time.Second, "20 ordered jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 20 })
	want := make([]int, 20)
	for i := range want {
		want[i] = i
	}
	mu.Lock()
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("order of deal/9 jobs (-want +got):\n%s", diff)
	}
	mu.Unlock()
	// Keys on the failing key's partition wait behind it; all others run.
	eventually(t, 10*time.Second, "other keys", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for i := range 10 {
			if q.Partition(fmt.Sprintf("deal/other%d", i)) != q.Partition(bad) {
				n++
			}
		}
		return len(others) >= n
	})
	if n := badCalls.Load(); n != 2 {
		t.Errorf("failing job attempts = %d; want 2 (the second retry is an hour away)", n)
	}
}

func TestEnqueueDedup(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{time.Second}, Partitions: 2})
	j := Job{ID: "event-1/deal-sync", Key: "deals/9", EventID: "event-1"}
	enqueue(t, q, j, j, j)
	n, err := q.Pending(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Pending = %d, %v; want 1", n, err)
	}
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error { rec.add(ctx, j, attempt, time.Now()); return nil })
	eventually(t, 5*time.Second, "run", func() bool { return rec.count() == 1 })
	enqueue(t, q, j) // after it ran: still within the window
	// A later job of the same key runs after j would have (one partition,
	// in stream order): once it ran, a stored duplicate would have too.
	enqueue(t, q, Job{ID: "event-2/deal-sync", Key: j.Key, EventID: "event-2"})
	eventually(t, 5*time.Second, "the later job", func() bool { return len(rec.of("event-2/deal-sync")) == 1 })
	if n := len(rec.of(j.ID)); n != 1 {
		t.Errorf("handler calls for %s = %d; want 1", j.ID, n)
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}, Partitions: 2})
	var healthy atomic.Bool
	var rec attempts
	run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, time.Now())
		if !healthy.Load() {
			return errDown
		}
		return nil
	})
	id := "0b3d-event/deal sync" // not a plain KV key
	enqueue(t, q, Job{ID: id, Kind: "route", Key: "deals/9", EventID: "0b3d-event", Payload: []byte(`{"x":1}`)})
	eventually(t, 5*time.Second, "dead letter", func() bool { return len(deadJobs(t, q)) == 1 })
	dead := deadJobs(t, q)
	if d := dead[0]; d.Job.ID != id || d.Attempts != 3 || d.LastError != "portal down" || string(d.Job.Payload) != `{"x":1}` || d.DeadAt.IsZero() {
		t.Errorf("Dead()[0] = %+v; want %q after 3 attempts", d, id)
	}
	// the dead letter is stored before the message is terminated: the
	// queue empties a moment after Dead lists the job
	eventually(t, 5*time.Second, "no job pending after the dead letter", func() bool {
		n := pending(t, q)
		return n == 0
	})
	if err := q.Replay(context.Background(), "no-such-job"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Replay(unknown) = %v; want ErrNotFound", err)
	}
	healthy.Store(true)
	// As an admin URL carries it: escaped.
	if err := q.Replay(context.Background(), url.PathEscape(id)); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	eventually(t, 5*time.Second, "replayed run", func() bool { return len(rec.of(id)) == 4 })
	if c := rec.of(id)[3]; c.attempt != 1 {
		t.Errorf("replayed attempt = %d; want 1 (attempts reset)", c.attempt)
	}
	if d, err := q.Dead(context.Background()); err != nil || d == nil || len(d) != 0 {
		t.Errorf("Dead after replay = %v, %v; want none", d, err)
	}
	eventually(t, 5*time.Second, "empty queue", func() bool { return pending(t, q) == 0 })
}

// TestRestartSurvival stops the gateway (queue, connection and embedded
// server) while a job waits for its retry, starts it again on the same
// data dir, and checks the retry runs at its scheduled time, not earlier.
func TestRestartSurvival(t *testing.T) {
	dir := t.TempDir()
	const delay = 1500 * time.Millisecond
	cfg := Config{Schedule: []time.Duration{delay}, Partitions: 2, AckWait: time.Second}

	bus := openBus(t, dir)
	var parked parkings
	q := newQueue(t, bus.JetStream(), cfg, WithObserver(Observer{Parked: parked.observe}))
	var rec attempts
	h := func(ctx context.Context, j *Job, attempt int) error {
		rec.add(ctx, j, attempt, time.Now())
		if attempt == 1 {
			return errDown
		}
		return nil
	}
	r := run(t, q, h)
	enqueue(t, q, Job{ID: "survivor", Key: "deals/9"})
	eventually(t, 5*time.Second, "first attempt", func() bool { return rec.count() == 1 })
	parked.after(t, "survivor", time.Time{}) // the retry state is written before the job is parked
	r.stop(t)
	bus.Close()

	bus = openBus(t, dir)
	defer bus.Close()
	q = newQueue(t, bus.JetStream(), cfg)
	run(t, q, h)
	eventually(t, 10*time.Second, "retry after restart", func() bool { return rec.count() == 2 })
	calls := rec.of("survivor")
	gap := calls[1].at.Sub(calls[0].at)
	t.Logf("retry ran %v after the first attempt (schedule %v)", gap, delay)
	if calls[1].attempt != 2 {
		t.Errorf("attempt after restart = %d; want 2", calls[1].attempt)
	}
	if gap < delay {
		t.Errorf("retry ran %v after the first attempt; want no earlier than %v", gap, delay)
	}
	if gap > delay+3*time.Second {
		t.Errorf("retry ran %v after the first attempt; want about %v", gap, delay)
	}
}

// TestTwoInstances runs 1,000 jobs through two queues on separate
// connections sharing the consumers, as two gateways would.
func TestTwoInstances(t *testing.T) {
	bus, url := openBusAt(t, t.TempDir())
	defer bus.Close()
	cfg := Config{Schedule: []time.Duration{10 * time.Millisecond}, Partitions: 8}
	q1 := newQueue(t, bus.JetStream(), cfg)

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	defer nc.Close()
	js2, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q2 := newQueue(t, js2, cfg)

	const n = 1000
	var mu sync.Mutex
	seen := map[string]int{}
	by := map[int]int{}
	last := map[string]int{} // key → last job number run
	var disorder []string
	handler := func(inst int) Handler {
		return func(ctx context.Context, j *Job, attempt int) error {
			mu.Lock()
			defer mu.Unlock()
			seen[j.ID]++
			by[inst]++
			if n, err := strconv.Atoi(string(j.Payload)); err == nil {
				if p, ok := last[j.Key]; ok && n < p {
					disorder = append(disorder, fmt.Sprintf("%s: %d after %d", j.Key, n, p))
				}
				last[j.Key] = n
			}
			return nil
		}
	}
	run(t, q1, handler(1))
	run(t, q2, handler(2))
	for i := range n {
		enqueue(t, q1, Job{ID: "job-" + strconv.Itoa(i), Key: "k" + strconv.Itoa(i%50), Payload: []byte(strconv.Itoa(i))})
	}
	eventually(t, 60*time.Second, "1000 jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == n })
	// One later job per partition: each runs after every job of its
	// partition, a redelivered one included, so once all have run a
	// second execution has shown up if there was one.
	sentinels := map[int]string{}
	for i := 0; len(sentinels) < cfg.Partitions; i++ {
		if k := "sentinel" + strconv.Itoa(i); sentinels[q1.Partition(k)] == "" {
			sentinels[q1.Partition(k)] = k
			enqueue(t, q1, Job{ID: "sentinel-" + k, Key: k})
		}
	}
	eventually(t, 30*time.Second, "a later job on every partition", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n+cfg.Partitions
	})
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s ran %d times; want 1", id, c)
		}
	}
	if len(disorder) > 0 {
		t.Errorf("jobs out of order per key: %v", disorder)
	}
	t.Logf("instance 1 ran %d jobs, instance 2 ran %d", by[1], by[2])
	if by[1] == 0 || by[2] == 0 {
		t.Errorf("one instance ran nothing: %v", by)
	}
}

func TestGracefulStopHandsBack(t *testing.T) {
	bus := openBus(t, t.TempDir())
	defer bus.Close()
	q := newQueue(t, bus.JetStream(), Config{Schedule: []time.Duration{time.Hour}, Partitions: 1, StopGrace: 100 * time.Millisecond})
	started := make(chan struct{})
	r := run(t, q, func(ctx context.Context, j *Job, attempt int) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	enqueue(t, q, Job{ID: "long", Key: "k"})
	<-started
	r.stop(t)
	// Handed back, not counted: a new run gets attempt 1 at once.
	got := make(chan int, 1)
	run(t, q, func(ctx context.Context, j *Job, attempt int) error { got <- attempt; return nil })
	select {
	case a := <-got:
		if a != 1 {
			t.Errorf("attempt after hand-back = %d; want 1", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handed-back job did not run again")
	}
}

// TestLongHandlerKeptAlive: a handler running past AckWait keeps its job
// (InProgress): a second instance does not get it meanwhile.
func TestLongHandlerKeptAlive(t *testing.T) {
	bus, url := openBusAt(t, t.TempDir())
	defer bus.Close()
	cfg := Config{Schedule: []time.Duration{time.Hour}, Partitions: 1, AckWait: 300 * time.Millisecond}
	var pendingSeen sync.Map
	q1 := newQueue(t, bus.JetStream(), Config{Schedule: cfg.Schedule, Partitions: 1, AckWait: cfg.AckWait, PendingEvery: 20 * time.Millisecond},
		WithObserver(Observer{Pending: func(n int) { pendingSeen.Store(n, true) }}))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js2, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q2 := newQueue(t, js2, cfg)
	var runs, later atomic.Int32
	h := func(ctx context.Context, j *Job, attempt int) error {
		if j.ID != "long" {
			later.Add(1)
			return nil
		}
		runs.Add(1)
		select {
		case <-time.After(1200 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}
	run(t, q1, h)
	run(t, q2, h)
	enqueue(t, q1, Job{ID: "long", Key: "k"})
	eventually(t, 10*time.Second, "job done", func() bool { return runs.Load() > 0 && pending(t, q1) == 0 })
	// A later job of the same key (its one partition) runs after any
	// redelivery of the long one: once it ran, a second run has shown up.
	enqueue(t, q1, Job{ID: "later", Key: "k"})
	eventually(t, 10*time.Second, "the later job", func() bool { return later.Load() == 1 })
	if n := runs.Load(); n != 1 {
		t.Errorf("a job running 4× AckWait ran %d times; want 1", n)
	}
	if _, ok := pendingSeen.Load(1); !ok {
		t.Error("the observer never saw 1 pending job")
	}
}

// TestStopWhileStarting: a stop that comes while Run is still creating the
// partitions' consumers is a graceful stop too: nil, not "context canceled".
func TestStopWhileStarting(t *testing.T) {
	b := openBus(t, t.TempDir())
	t.Cleanup(func() { b.Close() })
	q := newQueue(t, b.JetStream(), Config{Schedule: []time.Duration{time.Second}, Partitions: 16})
	h := func(context.Context, *Job, int) error { return nil }
	testenv.StopWhileStarting(t, func(ctx context.Context) error { return q.Run(ctx, h) })
}
