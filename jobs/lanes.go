package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/telemetry"
)

// lane is the work of one key (bucket hookgate_lanes, keyed by kvKey of
// the job's Key): the head, the job that runs or waits for its next
// attempt, and the ids of the jobs of the same key that came after it, in
// order (their bodies are in the parked bucket). A lane exists while its
// key has work; each creation has a new ID, named by the one wake message
// that runs it.
type lane struct {
	ID        string    `json:"id"`
	Key       string    `json:"key"`
	Head      Job       `json:"head"`
	Since     time.Time `json:"since"`           // when the head became head
	Queued    time.Time `json:"queued,omitzero"` // when the head was admitted
	Attempt   int       `json:"attempt"`
	NextAt    time.Time `json:"next_at,omitzero"`
	FirstAt   time.Time `json:"first_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Followers []string  `json:"followers,omitempty"`
	// Trace is the span of the head's last failed attempt: the next
	// attempt's span links to it.
	Trace telemetry.Carrier `json:"trace,omitzero"`
}

func (l *lane) has(id string) bool {
	return l.Head.ID == id || slices.Contains(l.Followers, id)
}

// wake is the message on the wake stream that runs a lane.
type wake struct {
	Key  string `json:"key"`
	Lane string `json:"lane"`
}

// errLaneFull makes a job wait on its partition: its lane already holds
// MaxFollowers jobs.
var errLaneFull = errors.New("jobs: lane full")

// markerTTL is how long the marker of a removed lane or parked body stays
// in its bucket.
const markerTTL = 10 * time.Minute

// wakeGrace is how long a wake message whose lane is not (yet) visible is
// kept: the wake is published just before the lane is created.
const wakeGrace = 2 * opTimeout

func laneKey(j *Job) string {
	if j.Key == "" {
		return kvKey(j.ID)
	}
	return kvKey(j.Key)
}

// admit moves a job from its partition into its key's lane: it creates
// the lane (and the wake that runs it) when the key has no work, and
// otherwise parks the job behind the jobs already there. A job already in
// the lane (a redelivered partition message) is not added again.
func (q *Queue) admit(ctx context.Context, j *Job) error {
	key := laneKey(j)
	for range 20 {
		e, err := q.lanes.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			l := lane{ID: hookgate.NewUUID(), Key: key, Head: *j, Since: q.now(), Queued: time.Now()}
			legacy := q.legacy && q.takeLegacyState(ctx, j, &l)
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			if err := q.publishWake(ctx, wake{Key: key, Lane: l.ID}); err != nil {
				return err
			}
			if _, err := q.lanes.Create(ctx, key, b); err != nil {
				if isWrongLastSequence(err) {
					continue // created meanwhile: park behind it
				}
				return fmt.Errorf("create lane: %w", err)
			}
			if legacy {
				if err := q.state.Purge(ctx, kvKey(j.ID)); err != nil {
					q.log.Warn("clear old job state", "job", j.ID, "err", err)
				}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read lane: %w", err)
		}
		var l lane
		if err := json.Unmarshal(e.Value(), &l); err != nil {
			// Not ours to repair by guessing: the key waits, loudly.
			return fmt.Errorf("unreadable lane %q: %w", key, err)
		}
		if l.has(j.ID) {
			return nil
		}
		if len(l.Followers) >= q.cfg.MaxFollowers {
			return errLaneFull
		}
		body, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if _, err := q.parked.Put(ctx, kvKey(j.ID), body); err != nil {
			return fmt.Errorf("park job: %w", err)
		}
		l.Followers = append(l.Followers, j.ID)
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if _, err := q.lanes.Update(ctx, key, b, e.Revision()); err != nil {
			if isWrongLastSequence(err) {
				continue
			}
			return fmt.Errorf("update lane: %w", err)
		}
		if q.obs.Parked != nil {
			q.obs.Parked(j, q.now(), l.NextAt)
		}
		return nil
	}
	return errors.New("jobs: lane changed 20 times while admitting a job")
}

func (q *Queue) publishWake(ctx context.Context, w wake) error {
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: WakeSubject, Data: b}
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(w.Lane)); err != nil {
		return fmt.Errorf("publish wake: %w", err)
	}
	return nil
}

// young reports a wake message published less than wakeGrace ago.
func young(msg jetstream.Msg) bool {
	md, err := msg.Metadata()
	return err == nil && time.Since(md.Timestamp) < wakeGrace
}

// loadLane reads a lane; ok is false when there is none.
func (q *Queue) loadLane(ctx context.Context, key string) (l lane, rev uint64, ok bool, err error) {
	e, err := q.lanes.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return lane{}, 0, false, nil
	}
	if err != nil {
		return lane{}, 0, false, err
	}
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return lane{}, 0, false, fmt.Errorf("unreadable lane %q: %w", key, err)
	}
	return l, e.Revision(), true, nil
}

// runLane runs the lane named by one wake message: its jobs one after the
// other until the lane is empty (the wake is acknowledged) or its head
// must wait for its next attempt (the wake comes back then).
func (q *Queue) runLane(ctx context.Context, msg jetstream.Msg, h Handler) {
	var w wake
	if err := json.Unmarshal(msg.Data(), &w); err != nil || w.Key == "" {
		q.log.Error("unreadable wake, dropped", "err", err)
		_ = msg.TermWithReason("unreadable wake")
		return
	}
	log := q.log.With("lane", w.Key)
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	l, rev, ok, err := q.loadLane(octx, w.Key)
	// The wake is published just before its lane is created: a runner
	// that is quicker than that looks again a few times.
	for i := 0; err == nil && !ok && i < 20 && young(msg); i++ {
		time.Sleep(10 * time.Millisecond)
		l, rev, ok, err = q.loadLane(octx, w.Key)
	}
	cancel()
	if err != nil {
		log.Warn("read lane", "err", err)
		_ = msg.NakWithDelay(errorPause)
		return
	}
	if !ok || l.ID != w.Lane {
		if !ok && young(msg) {
			_ = msg.NakWithDelay(errorPause) // its lane is being created
			return
		}
		_ = msg.TermWithReason("lane done")
		return
	}
	for {
		now := q.now()
		if l.NextAt.After(now) {
			_ = msg.NakWithDelay(min(l.NextAt.Sub(now), q.cfg.Recheck))
			q.observeParked(&l.Head, now, l.NextAt)
			return
		}
		var next bool
		l, rev, next = q.step(ctx, msg, h, w.Key, l, rev)
		if !next {
			return
		}
		if ctx.Err() != nil {
			_ = msg.Nak() // stopping: the rest of the lane waits for the next run
			return
		}
	}
}

// step runs the head of a lane once (with the jobs it coalesces) and
// records the outcome. next says the lane goes on with l as it now is;
// otherwise the wake message has been answered.
func (q *Queue) step(ctx context.Context, msg jetstream.Msg, h Handler, key string, l lane, rev uint64) (lane, uint64, bool) {
	log := q.log.With("lane", key, "job", l.Head.ID)
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	group, err := q.group(octx, &l)
	cancel()
	if err != nil {
		log.Warn("read parked jobs", "err", err)
		_ = msg.NakWithDelay(errorPause)
		return l, rev, false
	}
	run := group[len(group)-1]
	run.Covers = group[:len(group)-1]
	if l.FirstAt.IsZero() {
		l.FirstAt = q.now()
	}
	attempt := l.Attempt + 1
	last := attempt > len(q.cfg.Schedule)
	sctx, span := startAttempt(ctx, &run, attempt, last, l.Trace)
	defer span.End()
	start := time.Now()
	herr, handedBack := q.runHandler(sctx, msg, h, &run, attempt, last)
	took := time.Since(start)
	octx, cancel = context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()

	switch {
	case herr == nil:
		endAttempt(span, "ok")
		q.observeAttempt(&run, attempt, nil, took)
		if len(group) > 1 && q.obs.Coalesced != nil {
			q.obs.Coalesced(&run, len(group))
		}
	case handedBack:
		endAttempt(span, "handed_back")
		log.Info("job handed back", "attempt", attempt)
		_ = msg.Nak()
		return l, rev, false
	default:
		q.observeAttempt(&run, attempt, herr, took)
		now := q.now()
		if !last && !IsPermanent(herr) {
			delay := q.cfg.Schedule[attempt-1]
			if d, ok := RetryDelay(herr); ok && d > 0 {
				delay = d
			}
			endAttempt(span, "retry")
			nl, nrev, err := q.mutate(octx, key, l, rev, func(c *lane) error {
				c.Attempt, c.NextAt, c.LastError, c.FirstAt = attempt, now.Add(delay), herr.Error(), l.FirstAt
				c.Trace = telemetry.CarrierOf(span.SpanContext())
				return nil
			})
			if err != nil {
				// Not counted: the same attempt runs again after the delay.
				log.Warn("save lane state", "err", err)
			} else {
				l, rev = nl, nrev
			}
			log.InfoContext(sctx, "job attempt failed", "attempt", attempt, "next_at", now.Add(delay), "waiting_behind", len(l.Followers), "err", herr)
			_ = msg.NakWithDelay(min(delay, q.cfg.Recheck))
			q.observeParked(&run, now, now.Add(delay))
			return l, rev, false
		}
		endAttempt(span, "dead")
		for _, j := range group {
			if err := q.deadLetter(octx, &j, l.FirstAt, attempt, herr, now); err != nil {
				log.Error("dead-letter job", "err", err)
				_ = msg.NakWithDelay(errorPause) // the same attempt runs again
				return l, rev, false
			}
		}
	}
	nl, nrev, empty, err := q.pop(octx, key, l, rev, len(group))
	if err != nil {
		// The head ran; it runs again later (at least once).
		log.Warn("advance lane", "err", err)
		_ = msg.NakWithDelay(errorPause)
		return l, rev, false
	}
	if empty {
		if err := msg.DoubleAck(octx); err != nil {
			log.Warn("ack wake", "err", err)
		}
		return nl, nrev, false
	}
	return nl, nrev, true
}

// group returns the jobs the next run covers: the head, and when the head
// coalesces, the followers right behind it that coalesce too (same kind),
// up to CoalesceMax.
func (q *Queue) group(ctx context.Context, l *lane) ([]Job, error) {
	out := []Job{l.Head}
	if !l.Head.Coalesce {
		return out, nil
	}
	for _, id := range l.Followers {
		if len(out) >= q.cfg.CoalesceMax {
			break
		}
		j, err := q.parkedJob(ctx, id)
		if err != nil {
			return nil, err
		}
		if !j.Coalesce || j.Kind != l.Head.Kind {
			break
		}
		out = append(out, *j)
	}
	return out, nil
}

func (q *Queue) parkedJob(ctx context.Context, id string) (*Job, error) {
	j, _, err := q.parkedEntry(ctx, id)
	return j, err
}

// parkedEntry returns a parked job and when it was parked.
func (q *Queue) parkedEntry(ctx context.Context, id string) (*Job, time.Time, error) {
	e, err := q.parked.Get(ctx, kvKey(id))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("parked job %q: %w", id, err)
	}
	var j Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return nil, time.Time{}, fmt.Errorf("parked job %q: %w", id, err)
	}
	return &j, e.Created(), nil
}

// mutate applies f to the lane and stores it, re-reading the lane when a
// job was parked behind it meanwhile (the only other writer).
func (q *Queue) mutate(ctx context.Context, key string, l lane, rev uint64, f func(*lane) error) (lane, uint64, error) {
	head := l.Head.ID
	for range 20 {
		c := l
		c.Followers = slices.Clone(l.Followers)
		if err := f(&c); err != nil {
			return l, rev, err
		}
		b, err := json.Marshal(c)
		if err != nil {
			return l, rev, err
		}
		nrev, err := q.lanes.Update(ctx, key, b, rev)
		if err == nil {
			return c, nrev, nil
		}
		if !isWrongLastSequence(err) {
			return l, rev, err
		}
		var ok bool
		if l, rev, ok, err = q.loadLane(ctx, key); err != nil {
			return l, rev, err
		}
		if !ok || l.Head.ID != head {
			return l, rev, errors.New("jobs: lane changed under its runner")
		}
	}
	return l, rev, errors.New("jobs: lane changed 20 times while updating it")
}

// pop removes the head and the n-1 followers it covered. The next
// follower becomes the head; an empty lane is deleted (unless a job was
// parked behind it meanwhile).
func (q *Queue) pop(ctx context.Context, key string, l lane, rev uint64, n int) (lane, uint64, bool, error) {
	head := l.Head.ID
	for range 20 {
		done := slices.Clone(l.Followers[:min(n-1, len(l.Followers))])
		rest := l.Followers[len(done):]
		var next *Job
		var queued time.Time
		for len(rest) > 0 && next == nil {
			j, at, err := q.parkedEntry(ctx, rest[0])
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				// Cannot happen: bodies are stored before their ids.
				q.log.Error("parked job lost; skipping it", "lane", key, "job", rest[0])
				done, rest = append(done, rest[0]), rest[1:]
			case err != nil:
				return l, rev, false, err
			default:
				next, queued = j, at
			}
		}
		var err error
		if next == nil {
			err = q.lanes.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(markerTTL))
			if err == nil {
				q.unpark(ctx, done)
				return lane{}, 0, true, nil
			}
		} else {
			c := lane{ID: l.ID, Key: l.Key, Head: *next, Since: q.now(), Queued: queued, Followers: slices.Clone(rest[1:])}
			var b []byte
			if b, err = json.Marshal(c); err != nil {
				return l, rev, false, err
			}
			var nrev uint64
			if nrev, err = q.lanes.Update(ctx, key, b, rev); err == nil {
				q.unpark(ctx, append(done, next.ID))
				return c, nrev, false, nil
			}
		}
		if !isWrongLastSequence(err) {
			return l, rev, false, fmt.Errorf("advance lane: %w", err)
		}
		var ok bool
		if l, rev, ok, err = q.loadLane(ctx, key); err != nil {
			return l, rev, false, err
		}
		if !ok || l.Head.ID != head {
			return l, rev, false, errors.New("jobs: lane changed under its runner")
		}
	}
	return l, rev, false, errors.New("jobs: lane changed 20 times while advancing it")
}

// unpark removes the bodies of jobs that left the parked list. A failure
// leaves a stray body, not a wrong lane.
func (q *Queue) unpark(ctx context.Context, ids []string) {
	for _, id := range ids {
		if err := q.parked.Purge(ctx, kvKey(id), jetstream.PurgeTTL(markerTTL)); err != nil {
			q.log.Warn("remove parked job body", "job", id, "err", err)
		}
	}
}

// oldState is a job's retry state as the version before lanes kept it in
// the state bucket.
type oldState struct {
	Attempt   int       `json:"attempt"`
	NextAt    time.Time `json:"next_at"`
	LastError string    `json:"last_error"`
	FirstAt   time.Time `json:"first_at"`
}

// takeLegacyState copies a job's retry state from the version before lanes
// into the new lane, so that an upgrade keeps its attempts and next_at;
// it reports whether there was one.
func (q *Queue) takeLegacyState(ctx context.Context, j *Job, l *lane) bool {
	e, err := q.state.Get(ctx, kvKey(j.ID))
	if err != nil {
		return false
	}
	var st oldState
	if json.Unmarshal(e.Value(), &st) != nil {
		return true // unreadable: start over, and clear it
	}
	l.Attempt, l.NextAt, l.LastError, l.FirstAt = st.Attempt, st.NextAt, st.LastError, st.FirstAt
	return true
}
