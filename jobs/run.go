package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/events"
)

// errHandBack cancels a handler still running StopGrace after Run's ctx
// ended; its job goes back to the queue without counting an attempt.
var errHandBack = errors.New("jobs: stopping, job handed back")

const (
	fetchWait  = 5 * time.Second        // longest pull before checking ctx again
	errorPause = 500 * time.Millisecond // after a failed pull or a failed KV read
	opTimeout  = 10 * time.Second       // acks, KV reads and writes
)

// Run works off the queue until ctx ends: one durable consumer per
// partition admitting jobs to their lanes, and the wake consumer running
// up to Partitions lanes at once, each one job at a time. When ctx ends it
// stops fetching, gives running handlers StopGrace to finish, then cancels
// them and hands their jobs back. It returns nil after a graceful stop,
// also one that comes while it is still setting up.
func (q *Queue) Run(ctx context.Context, handler Handler) error {
	if handler == nil {
		return errors.New("jobs: nil handler")
	}
	err := q.run(ctx, handler)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func (q *Queue) run(ctx context.Context, handler Handler) error {
	parts, err := q.partitions(ctx)
	if err != nil {
		return err
	}
	cons := make([]jetstream.Consumer, len(parts))
	for i, p := range parts {
		cons[i], err = q.js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, jetstream.ConsumerConfig{
			Durable:       "jobs-" + strconv.Itoa(p),
			Description:   "hookgate jobs, partition " + strconv.Itoa(p) + ": admitted to their lanes in order",
			FilterSubject: subject(p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       q.cfg.AckWait,
			MaxAckPending: 1,
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fmt.Errorf("jobs: consumer for partition %d: %w", p, err)
		}
	}
	wakeCons, err := q.js.CreateOrUpdateConsumer(ctx, q.cfg.WakeStream, jetstream.ConsumerConfig{
		Durable:     "wake",
		Description: "hookgate lanes: one runner per lane",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     q.cfg.AckWait,
		// Waiting lanes hold their wake message (NakWithDelay): no limit,
		// or enough of them would stop every other lane.
		MaxAckPending: 1 << 20,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("jobs: wake consumer: %w", err)
	}
	var wg sync.WaitGroup
	for i := range cons {
		wg.Go(func() { q.work(ctx, parts[i], cons[i]) })
	}
	wg.Go(func() { q.runLanes(ctx, wakeCons, handler) })
	if q.obs.Pending != nil {
		wg.Go(func() { q.reportPending(ctx) })
	}
	wg.Wait()
	return nil
}

// partitions lists 0..Partitions-1 plus any higher partition that still
// holds jobs (Partitions was lowered since they were stored).
func (q *Queue) partitions(ctx context.Context) ([]int, error) {
	parts := make([]int, q.cfg.Partitions)
	for i := range parts {
		parts[i] = i
	}
	s, err := q.js.Stream(ctx, q.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("jobs: stream %s: %w", q.cfg.Stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(Subjects))
	if err != nil {
		return nil, fmt.Errorf("jobs: stream %s: %w", q.cfg.Stream, err)
	}
	for subj, n := range info.State.Subjects {
		p, err := strconv.Atoi(strings.TrimPrefix(subj, SubjectPrefix))
		if err == nil && p >= q.cfg.Partitions && n > 0 {
			q.log.Warn("jobs stored on a partition beyond retry.workers; working them off", "partition", p, "jobs", n)
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	return parts, nil
}

func (q *Queue) reportPending(ctx context.Context) {
	t := time.NewTicker(q.cfg.PendingEvery)
	defer t.Stop()
	for {
		if n, err := q.Pending(ctx); err == nil {
			q.obs.Pending(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// work admits the jobs of one partition to their lanes, in order.
func (q *Queue) work(ctx context.Context, part int, cons jetstream.Consumer) {
	log := q.log.With("partition", part)
	for ctx.Err() == nil {
		msg, err := events.FetchOne(ctx, cons, fetchWait)
		if err != nil {
			log.Warn("fetch job", "err", err)
			events.Pause(ctx, errorPause)
			continue
		}
		if msg == nil {
			continue
		}
		q.ingest(ctx, msg)
	}
}

// ingest admits one partition message to its lane and acknowledges it.
func (q *Queue) ingest(ctx context.Context, msg jetstream.Msg) {
	var j Job
	if err := json.Unmarshal(msg.Data(), &j); err != nil || j.ID == "" {
		q.log.Error("unreadable job, dropped", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("unreadable job")
		return
	}
	// Admitting finishes even while stopping: it takes milliseconds.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if err := q.admit(octx, &j); err != nil {
		pause := errorPause
		if errors.Is(err, errLaneFull) {
			pause = q.cfg.Recheck
		}
		q.log.Warn("admit job; it waits on its partition", "job", j.ID, "key", j.Key, "err", err)
		_ = msg.NakWithDelay(pause)
		return
	}
	if err := msg.DoubleAck(octx); err != nil {
		// Redelivered: admit finds it in its lane (or runs it again
		// when the lane is done: at least once).
		q.log.Warn("ack admitted job", "job", j.ID, "err", err)
	}
}

// runLanes fetches wake messages and runs their lanes, up to Partitions
// at once.
func (q *Queue) runLanes(ctx context.Context, cons jetstream.Consumer, h Handler) {
	slots := make(chan struct{}, q.cfg.Partitions)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := events.FetchOne(ctx, cons, fetchWait)
		if err != nil || msg == nil {
			<-slots
			if err != nil {
				q.log.Warn("fetch wake", "err", err)
				events.Pause(ctx, errorPause)
			}
			continue
		}
		if ctx.Err() != nil {
			_ = msg.Nak()
			<-slots
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			q.runLane(ctx, msg, h)
		})
	}
}

func (q *Queue) observeParked(j *Job, now, next time.Time) {
	if q.obs.Parked != nil {
		q.obs.Parked(j, now, next)
	}
}

func (q *Queue) observeAttempt(j *Job, attempt int, err error, took time.Duration) {
	if q.obs.Attempt != nil {
		q.obs.Attempt(j, attempt, err, took)
	}
}

// runHandler runs h, keeping the message alive with InProgress. When ctx
// ends it waits StopGrace, then cancels the handler; handedBack says the
// handler failed after that cancellation.
func (q *Queue) runHandler(ctx context.Context, msg jetstream.Msg, h Handler, j *Job, attempt int, last bool) (err error, handedBack bool) {
	hctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	hctx = context.WithValue(hctx, lastAttemptKey, last)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("jobs: handler panic: %v\n%s", r, debug.Stack())
			}
		}()
		done <- h(hctx, j, attempt)
	}()
	tick := time.NewTicker(max(q.cfg.AckWait/3, 10*time.Millisecond))
	defer tick.Stop()
	stopping := ctx.Done()
	var grace <-chan time.Time
	cancelled := false
	for {
		select {
		case err := <-done:
			return err, err != nil && cancelled
		case <-tick.C:
			_ = msg.InProgress()
		case <-stopping:
			stopping = nil
			t := time.NewTimer(q.cfg.StopGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			grace = nil
			cancelled = true
			cancel(errHandBack)
		}
	}
}

// deadLetter stores the job in the dead bucket. If that fails the caller
// leaves the job where it is and the same attempt runs again later.
func (q *Queue) deadLetter(ctx context.Context, j *Job, firstAt time.Time, attempt int, herr error, now time.Time) error {
	d := DeadJob{Job: *j, Attempts: attempt, LastError: herr.Error(), FirstAt: firstAt, DeadAt: now}
	d.Job.Covers = nil
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := q.dead.Put(ctx, kvKey(j.ID), b); err != nil {
		return err
	}
	q.log.Warn("job dead-lettered", "job", j.ID, "kind", j.Kind, "attempts", attempt, "err", herr)
	if q.obs.Dead != nil {
		q.obs.Dead(d)
	}
	return nil
}
