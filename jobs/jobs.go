// Package jobs is hookgate's durable work queue on JetStream: route calls
// and deliveries that must eventually happen, retried on retry.schedule,
// surviving restarts, and dead-lettered once the schedule is spent.
//
// Layout on the bus:
//
//   - stream HOOKGATE_JOBS (work-queue retention) with subjects
//     hookgate.jobs.<partition>; a job goes to partition
//     fnv32a(Key) % Partitions, and its Nats-Msg-Id is the job id, so
//     enqueueing the same job twice within the de-duplication window
//     stores it once;
//
//   - one durable pull consumer jobs-<partition> per partition with
//     MaxAckPending 1: the jobs of one partition (hence of one key) are
//     admitted to their lanes (below) one at a time in stream order,
//     partitions in parallel, and any number of gateway instances may
//     share the consumers;
//
//   - KV bucket hookgate_jobs: the per-job retry state of the version
//     before lanes; no longer written (Replay still clears an entry);
//
//   - KV bucket hookgate_dead: dead-lettered jobs, keyed by job id.
//
//   - KV bucket hookgate_lanes: one lane per key that has work, keyed by
//     the key: its head job (running or waiting for its next attempt, with
//     attempts made, next_at and the last error) and the ids of the jobs
//     of the same key behind it, in order;
//
//   - KV bucket hookgate_parked: the bodies of the jobs behind a head;
//
//   - stream HOOKGATE_WAKE (work-queue retention), subject hookgate.wake:
//     one message per lane, consumed by the durable consumer "wake" that
//     every instance shares.
//
// A partition's worker only admits jobs, in stream order: it moves each
// job into its key's lane (creating the lane and publishing its wake
// message when the key has none, else appending the job behind the ones
// there) and acknowledges it off the partition. A partition never waits
// for a job to run, so no key ever waits behind another key.
//
// The wake consumer runs lanes, up to Partitions (retry.workers) at once
// per instance: a runner holds the lane's wake message (InProgress while a
// job runs), runs the head, then the next job of the lane, until the lane
// is empty (the lane is deleted, the wake acknowledged). A head that
// fails waits: its state is written into the lane and the wake message is
// handed back with NakWithDelay until next_at (at most Recheck at a time);
// on every delivery the runner compares next_at with its clock, so the
// schedule holds across restarts, server redeliveries and instances. The
// jobs behind it wait in the lane, in order; other keys' lanes run.
//
// Only the lane's one wake message runs it, and every write to a lane is a
// compare-and-set on its revision (admit appends, the runner advances), so
// per-key order holds with several instances, and a crashed runner's wake
// comes back after AckWait to any instance. A head that is dead-lettered
// leaves the lane like a finished one: the jobs behind it run next (see
// docs/reliability.md, "A dead-lettered head").
package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/telemetry"
)

// Defaults of Config.
const (
	DefaultStream      = "HOOKGATE_JOBS"
	DefaultStateBucket = "hookgate_jobs"
	DefaultDeadBucket  = "hookgate_dead"
	DefaultPartitions  = 16
	DefaultAckWait     = 30 * time.Second
	DefaultRecheck     = time.Minute
	DefaultDedupWindow = time.Hour
	DefaultStopGrace   = 10 * time.Second
	DefaultPendingTick = 10 * time.Second
	DefaultWakeStream  = "HOOKGATE_WAKE"
	DefaultLaneBucket  = "hookgate_lanes"
	DefaultParkBucket  = "hookgate_parked"
	// DefaultMaxFollowers is how many jobs may wait behind one lane's
	// head; past it, further jobs of that key wait on their partition.
	DefaultMaxFollowers = 10000
	// DefaultCoalesceMax is the most jobs one coalesced run covers.
	DefaultCoalesceMax = 100

	// WakeSubject is the subject of the wake stream.
	WakeSubject = "hookgate.wake"

	// SubjectPrefix prefixes the partition number in a job's subject.
	SubjectPrefix = "hookgate.jobs."
	// Subjects is the subject filter of the jobs stream.
	Subjects = SubjectPrefix + ">"
)

// ErrNotFound is returned by Replay for an id that is not dead-lettered.
var ErrNotFound = errors.New("jobs: no such dead job")

// Job is one unit of durable work.
type Job struct {
	// ID is the idempotency key, used as Nats-Msg-Id: enqueueing the same
	// id again within the de-duplication window is a no-op.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Key orders jobs: jobs with the same Key run one after the other, in
	// the order they were enqueued. An empty Key orders by ID (no order).
	Key     string          `json:"key"`
	EventID string          `json:"event_id"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Trace is the trace context the job's attempts belong to (the
	// routing of its event); empty when tracing is off.
	Trace telemetry.Carrier `json:"trace,omitzero"`
	// Coalesce lets one run cover this job and the coalescing jobs of the
	// same kind and key right behind it, when they wait together: the
	// handler gets the latest with the earlier ones in Covers.
	Coalesce bool `json:"coalesce,omitempty"`
	// Covers, set only for a Handler, lists the earlier jobs (oldest
	// first) that this run completes too.
	Covers []Job `json:"-"`
}

// DeadJob is a job whose schedule is spent (or that failed permanently).
type DeadJob struct {
	Job       Job       `json:"job"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	FirstAt   time.Time `json:"first_at"` // first attempt
	DeadAt    time.Time `json:"dead_at"`
}

// Handler runs a job. attempt is 1-based. A nil error completes the job;
// an error schedules the next attempt (see RetryAfter and Permanent).
type Handler func(ctx context.Context, j *Job, attempt int) error

// Config is the queue's configuration. Zero fields take the defaults.
type Config struct {
	Stream string // default HOOKGATE_JOBS
	// Schedule is the delay before each retry: a job is attempted at most
	// len(Schedule)+1 times (retry.schedule).
	Schedule []time.Duration
	// Partitions is the number of parallel, internally ordered lanes
	// (retry.workers). Changing it re-maps keys; jobs already stored on a
	// partition beyond the new count are still worked off.
	Partitions int
	// AckWait is how long the server waits for a worker before handing
	// the job to another; running handlers keep it alive with InProgress.
	AckWait time.Duration
	// Recheck is the longest wait handed to the server at once: a job due
	// later is redelivered every Recheck and compared with the clock again.
	Recheck     time.Duration
	DedupWindow time.Duration // Nats-Msg-Id de-duplication window
	Replicas    int
	// StopGrace is how long a running handler may finish after Run's ctx
	// ends; then its ctx is cancelled and the job handed back.
	StopGrace   time.Duration
	StateBucket string
	DeadBucket  string
	// PendingEvery is how often Run reports Pending to the observer.
	PendingEvery time.Duration
	WakeStream   string // default HOOKGATE_WAKE
	LaneBucket   string // default hookgate_lanes
	ParkBucket   string // default hookgate_parked
	MaxFollowers int    // default DefaultMaxFollowers
	CoalesceMax  int    // default DefaultCoalesceMax
}

// FromConfig returns the Config of the config file's retry section.
func FromConfig(r config.Retry) Config {
	c := Config{Partitions: r.Workers}
	for _, d := range r.Schedule {
		c.Schedule = append(c.Schedule, d.D())
	}
	return c
}

func (c *Config) defaults() error {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Recheck <= 0 {
		c.Recheck = DefaultRecheck
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.StateBucket == "" {
		c.StateBucket = DefaultStateBucket
	}
	if c.DeadBucket == "" {
		c.DeadBucket = DefaultDeadBucket
	}
	if c.WakeStream == "" {
		c.WakeStream = DefaultWakeStream
	}
	if c.LaneBucket == "" {
		c.LaneBucket = DefaultLaneBucket
	}
	if c.ParkBucket == "" {
		c.ParkBucket = DefaultParkBucket
	}
	if c.MaxFollowers <= 0 {
		c.MaxFollowers = DefaultMaxFollowers
	}
	if c.CoalesceMax <= 0 {
		c.CoalesceMax = DefaultCoalesceMax
	}
	if c.PendingEvery <= 0 {
		c.PendingEvery = DefaultPendingTick
	}
	for i, d := range c.Schedule {
		if d <= 0 {
			return fmt.Errorf("jobs: schedule[%d] must be positive", i)
		}
	}
	return nil
}

// Observer receives what metrics need. Nil fields are skipped; the
// functions are called from workers and must not block.
type Observer struct {
	// Pending reports the number of stored jobs (waiting or running),
	// every Config.PendingEvery while Run runs.
	Pending func(n int)
	// Attempt reports every finished attempt; err is nil on success.
	Attempt func(j *Job, attempt int, err error, took time.Duration)
	// Dead reports a dead-lettered job.
	Dead func(d DeadJob)
	// Parked reports a job put back to wait for its next attempt, after
	// a failure or on a delivery that came before it was due, and a job
	// parked behind its key's head (next is then the head's next_at,
	// zero while the head runs): now is the queue's clock when it
	// decided. A test with a fake clock waits for this instead of
	// sleeping.
	Parked func(j *Job, now, next time.Time)
	// Coalesced reports a successful run of j that covered n jobs (n > 1).
	Coalesced func(j *Job, n int)
}

// Option configures a Queue.
type Option func(*Queue)

// WithClock sets the clock that computes and checks next_at.
func WithClock(now func() time.Time) Option { return func(q *Queue) { q.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(q *Queue) { q.log = l } }

// WithObserver sets hooks for metrics.
func WithObserver(o Observer) Option { return func(q *Queue) { q.obs = o } }

// Queue is a durable job queue. It is safe for concurrent use.
type Queue struct {
	js     jetstream.JetStream
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	obs    Observer
	state  jetstream.KeyValue
	dead   jetstream.KeyValue
	lanes  jetstream.KeyValue
	parked jetstream.KeyValue
	// legacy: the state bucket holds entries of the version before
	// lanes; a job starting a lane takes its attempts and next_at over.
	legacy bool
}

// New makes sure the jobs stream and the state and dead-letter buckets
// exist and returns the queue. It starts nothing; see Run.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Queue, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	q := &Queue{js: js, cfg: cfg, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(q)
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "hookgate durable jobs",
		Subjects:    []string{Subjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.DedupWindow,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: stream %s: %w", cfg.Stream, err)
	}
	q.state, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.StateBucket,
		Description: "hookgate job retry state",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: bucket %s: %w", cfg.StateBucket, err)
	}
	if st, err := q.state.Status(ctx); err == nil && st.Values() > 0 {
		// jobs stored by the version before lanes may have a retry state
		q.legacy = true
	}
	q.dead, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.DeadBucket,
		Description: "hookgate dead-lettered jobs",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: bucket %s: %w", cfg.DeadBucket, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.WakeStream,
		Description: "hookgate lanes to run (one message per key with work)",
		Subjects:    []string{WakeSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.DedupWindow,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: stream %s: %w", cfg.WakeStream, err)
	}
	q.lanes, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.LaneBucket,
		Description: "hookgate lanes: per key, the head job and the jobs waiting behind it",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// the marker of a key whose lane is done expires (markerTTL):
		// keys that had work once do not pile up markers forever
		LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: bucket %s: %w", cfg.LaneBucket, err)
	}
	q.parked, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         cfg.ParkBucket,
		Description:    "hookgate jobs waiting behind their key's head",
		Storage:        jetstream.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: bucket %s: %w", cfg.ParkBucket, err)
	}
	return q, nil
}

// Config returns the queue's configuration with defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// Partition returns the partition of key.
func (q *Queue) Partition(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(q.cfg.Partitions))
}

func subject(p int) string { return SubjectPrefix + strconv.Itoa(p) }

// Enqueue stores j on its partition. A job whose id was enqueued before,
// within the de-duplication window, is not stored again.
func (q *Queue) Enqueue(ctx context.Context, j Job) error {
	_, err := q.publish(ctx, j, j.ID)
	return err
}

func (q *Queue) publish(ctx context.Context, j Job, msgID string) (duplicate bool, err error) {
	if j.ID == "" {
		return false, errors.New("jobs: job without id")
	}
	data, err := json.Marshal(j)
	if err != nil {
		return false, fmt.Errorf("encode job %q: %w", j.ID, err)
	}
	key := j.Key
	if key == "" {
		key = j.ID
	}
	msg := &nats.Msg{Subject: subject(q.Partition(key)), Data: data, Header: nats.Header{}}
	msg.Header.Set("Hookgate-Job-Kind", j.Kind)
	ack, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		return false, fmt.Errorf("enqueue job %q: %w", j.ID, err)
	}
	if ack.Duplicate {
		q.log.Debug("job already enqueued", "job", j.ID)
	}
	return ack.Duplicate, nil
}

// Pending returns the number of stored jobs: not yet admitted to their
// lane, running, waiting for a retry, or waiting behind their key's head.
func (q *Queue) Pending(ctx context.Context) (int, error) {
	s, err := q.js.Stream(ctx, q.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("jobs: stream %s: %w", q.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jobs: stream %s: %w", q.cfg.Stream, err)
	}
	n := int(info.State.Msgs)
	for _, kv := range []jetstream.KeyValue{q.lanes, q.parked} {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return 0, fmt.Errorf("jobs: count %s: %w", kv.Bucket(), err)
		}
		for range keys.Keys() {
			n++
		}
	}
	return n, nil
}

// RetryAfter wraps err so that the next attempt comes after d instead of
// the schedule's delay (an answer's Retry-After). It still counts as an
// attempt.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &retryAfterError{d: d, err: err}
}

// Permanent wraps err so that the job is dead-lettered at once.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryDelay returns the delay set by RetryAfter, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

type retryAfterError struct {
	d   time.Duration
	err error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

type ctxKey int

const lastAttemptKey ctxKey = iota

// LastAttempt reports, inside a Handler, whether a failure of this attempt
// dead-letters the job (the schedule is spent): history rows of the attempt
// say "dead" rather than "retry".
func LastAttempt(ctx context.Context) bool {
	b, _ := ctx.Value(lastAttemptKey).(bool)
	return b
}

// kvKeyPlain matches ids usable as KV keys as they are.
var kvKeyPlain = regexp.MustCompile(`^[-/_a-zA-Z0-9]+$`)

// kvKey maps a job id to a KV key: ids made of safe characters are kept
// (readable in `nats kv ls`), others are base64url-encoded behind "=",
// which a plain key never holds.
func kvKey(id string) string {
	if kvKeyPlain.MatchString(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}
