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
	"github.com/hookgate/hookgate/telemetry"
)

// state is a job's retry state in the state bucket.
type state struct {
	Attempt   int       `json:"attempt"` // attempts made
	NextAt    time.Time `json:"next_at"`
	LastError string    `json:"last_error"`
	FirstAt   time.Time `json:"first_at"`
	// Trace is the span of the attempt made: the next attempt's span
	// links to it.
	Trace telemetry.Carrier `json:"trace,omitzero"`
}

// errHandBack cancels a handler still running StopGrace after Run's ctx
// ended; its job goes back to the queue without counting an attempt.
var errHandBack = errors.New("jobs: stopping, job handed back")

const (
	fetchWait  = 5 * time.Second        // longest pull before checking ctx again
	errorPause = 500 * time.Millisecond // after a failed pull or a failed KV read
	opTimeout  = 10 * time.Second       // acks, KV reads and writes
)

// Run works off the queue until ctx ends: one durable consumer per
// partition, each running handler on one job at a time. When ctx ends it
// stops fetching, gives a running handler StopGrace to finish, then
// cancels it and hands its job back. It returns nil after a graceful stop,
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
			Description:   "hookgate jobs, partition " + strconv.Itoa(p),
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
	var wg sync.WaitGroup
	for i := range cons {
		wg.Go(func() { q.work(ctx, parts[i], cons[i], handler) })
	}
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

func (q *Queue) work(ctx context.Context, part int, cons jetstream.Consumer, h Handler) {
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
		if ctx.Err() != nil {
			// Fetched while stopping: hand it back at once.
			_ = msg.Nak()
			return
		}
		q.process(ctx, msg, h)
	}
}

// process runs one delivery of a job.
func (q *Queue) process(ctx context.Context, msg jetstream.Msg, h Handler) {
	var j Job
	if err := json.Unmarshal(msg.Data(), &j); err != nil || j.ID == "" {
		q.log.Error("unreadable job, dropped", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("unreadable job")
		return
	}
	log := q.log.With("job", j.ID, "kind", j.Kind)
	key := kvKey(j.ID)
	// KV and ack operations finish even while stopping.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	st, stored, err := q.loadState(octx, key)
	cancel()
	if err != nil {
		log.Warn("read job state", "err", err)
		_ = msg.NakWithDelay(errorPause)
		return
	}
	now := q.now()
	if st.NextAt.After(now) {
		// Not due yet (a redelivery, a restart, or a recheck).
		_ = msg.NakWithDelay(min(st.NextAt.Sub(now), q.cfg.Recheck))
		q.observeParked(&j, now, st.NextAt)
		return
	}
	attempt := st.Attempt + 1
	if st.FirstAt.IsZero() {
		st.FirstAt = now
	}
	last := attempt > len(q.cfg.Schedule)
	sctx, span := startAttempt(ctx, &j, attempt, last, st.Trace)
	start := time.Now()
	herr, handedBack := q.runHandler(sctx, msg, h, &j, attempt, last)
	took := time.Since(start)
	defer span.End()
	octx, cancel = context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()

	if herr == nil {
		if err := msg.DoubleAck(octx); err != nil {
			// The job ran; if the ack was lost it runs again (at least once).
			log.Warn("ack job", "err", err)
		}
		if stored {
			if err := q.state.Purge(octx, key); err != nil {
				log.Warn("clear job state", "err", err)
			}
		}
		q.observeAttempt(&j, attempt, nil, took)
		endAttempt(span, "ok")
		return
	}
	if handedBack {
		endAttempt(span, "handed_back")
		log.Info("job handed back", "attempt", attempt)
		_ = msg.Nak()
		return
	}
	q.observeAttempt(&j, attempt, herr, took)
	now = q.now()
	if last || IsPermanent(herr) {
		endAttempt(span, "dead")
		q.deadLetter(octx, msg, &j, st, attempt, herr, now)
		return
	}
	endAttempt(span, "retry")
	delay := q.cfg.Schedule[attempt-1]
	if d, ok := RetryDelay(herr); ok && d > 0 {
		delay = d
	}
	st.Attempt, st.NextAt, st.LastError = attempt, now.Add(delay), herr.Error()
	st.Trace = telemetry.CarrierOf(span.SpanContext())
	if err := q.saveState(octx, key, st); err != nil {
		// Without the state the attempt is not counted: it runs again
		// with the same number after the delay.
		log.Warn("save job state", "err", err)
	}
	log.InfoContext(sctx, "job attempt failed", "attempt", attempt, "next_at", st.NextAt, "err", herr)
	_ = msg.NakWithDelay(min(delay, q.cfg.Recheck))
	q.observeParked(&j, now, st.NextAt)
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

func (q *Queue) loadState(ctx context.Context, key string) (st state, stored bool, err error) {
	e, err := q.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		q.log.Warn("unreadable job state, starting over", "key", key, "err", err)
		return state{}, true, nil
	}
	return st, true, nil
}

func (q *Queue) saveState(ctx context.Context, key string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = q.state.Put(ctx, key, b)
	return err
}

// deadLetter stores the job in the dead bucket and removes it from the
// queue. If the dead bucket cannot be written the job stays queued and the
// same attempt runs again later.
func (q *Queue) deadLetter(ctx context.Context, msg jetstream.Msg, j *Job, st state, attempt int, herr error, now time.Time) {
	d := DeadJob{Job: *j, Attempts: attempt, LastError: herr.Error(), FirstAt: st.FirstAt, DeadAt: now}
	b, err := json.Marshal(d)
	if err == nil {
		_, err = q.dead.Put(ctx, kvKey(j.ID), b)
	}
	if err != nil {
		q.log.Error("dead-letter job", "job", j.ID, "err", err)
		_ = msg.NakWithDelay(errorPause)
		return
	}
	if err := q.state.Purge(ctx, kvKey(j.ID)); err != nil {
		q.log.Warn("clear job state", "job", j.ID, "err", err)
	}
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		q.log.Warn("term dead job", "job", j.ID, "err", err)
	}
	q.log.Warn("job dead-lettered", "job", j.ID, "kind", j.Kind, "attempts", attempt, "err", herr)
	if q.obs.Dead != nil {
		q.obs.Dead(d)
	}
}
