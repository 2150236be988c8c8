// Package reconcile finds the Bitrix24 changes whose events never arrived
// (issue 18, docs/sync.md). Bitrix24 sends each event once: one it could
// not deliver is gone. Per portal and entity type, every `every`, one
// gateway instance lists the entities modified since a checkpoint kept on
// the bus (crm.<entity>.list filtered by DATE_MODIFY, paged by ID, through
// the portal's client and so inside its rate budget), compares each with
// what the platform was sent (the routes' seen records), and publishes an
// event from a reconcile source for every change no event covered. The
// events are routed like any other.
//
// On the bus: KV bucket hookgate_reconcile, one key <portal>.<entity>
// holding the checkpoint, when the next run is due and the lease of the
// instance running it. Instances take the lease with a compare-and-set on
// the key's revision, so exactly one runs each period however many poll.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/routes"
)

// BucketName is the KV bucket of checkpoints and leases.
const BucketName = "hookgate_reconcile"

// Provider is the provider of the events reconciliation publishes.
const Provider = "reconcile"

// dateLayout is how DATE_MODIFY bounds are sent: ISO 8601 with a numeric
// offset, as Bitrix24 writes its own dates.
const dateLayout = "2006-01-02T15:04:05-07:00"

// Caller calls a REST method (*outbound.Bitrix24 implements it).
type Caller interface {
	Call(ctx context.Context, method string, params map[string]any) (*outbound.Result, error)
}

// PublishFunc stores an event on the bus (events.Bus.Publish).
type PublishFunc func(ctx context.Context, subject, msgID string, data []byte) (duplicate bool, err error)

// Deps is what a Reconciler works with.
type Deps struct {
	Client  Caller             // required: the portal's client
	State   jetstream.KeyValue // required: Bucket
	Seen    jetstream.KeyValue // required: routes.SeenBucket
	Publish PublishFunc        // required
	// Recorder gets one inbound history row per published event.
	Recorder hookgate.Recorder
	Logger   *slog.Logger
	Clock    func() time.Time
	// Instance names this process in leases (default host/pid).
	Instance string
	// Observe reports each run: result ok, failed or skipped (another
	// instance holds the lease), and the events published.
	Observe func(portal, entity, result string, events int)
}

// Reconciler reconciles one portal and entity type.
type Reconciler struct {
	cfg    config.Reconcile
	deps   Deps
	log    *slog.Logger
	now    func() time.Time
	key    string
	source string
	lease  time.Duration
	poll   time.Duration
}

// New returns the reconciler of cfg.
func New(cfg config.Reconcile, deps Deps) (*Reconciler, error) {
	if deps.Client == nil || deps.State == nil || deps.Seen == nil || deps.Publish == nil {
		return nil, errors.New("reconcile: client, state, seen and publish are required")
	}
	if cfg.Every.D() <= 0 {
		return nil, fmt.Errorf("reconcile %s/%s: every must be positive", cfg.Portal, cfg.Entity)
	}
	if cfg.Settle == 0 {
		cfg.Settle = config.Duration(config.DefaultReconcileSettle)
	}
	r := &Reconciler{cfg: cfg, deps: deps, log: deps.Logger, now: deps.Clock,
		key: cfg.Portal + "." + cfg.Entity, source: cfg.SourceID()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("portal", cfg.Portal, "entity", cfg.Entity)
	if r.now == nil {
		r.now = time.Now
	}
	if r.deps.Instance == "" {
		host, _ := os.Hostname()
		r.deps.Instance = host + "/" + strconv.Itoa(os.Getpid())
	}
	every := cfg.Every.D()
	r.lease = max(2*every, 2*time.Minute)
	r.poll = min(max(every/5, 200*time.Millisecond), 5*time.Second)
	return r, nil
}

// Bucket opens (creating it if needed) the bucket of checkpoints.
func Bucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: BucketName, Description: "hookgate reconciliation: checkpoints and leases per portal and entity",
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: bucket %s: %w", BucketName, err)
	}
	return kv, nil
}

// State is the bus entry of one portal and entity.
type State struct {
	// Checkpoint: changes up to it (DATE_MODIFY, portal time) are done.
	Checkpoint time.Time `json:"checkpoint"`
	NextAt     time.Time `json:"next_at"`
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitempty"`
	LastRun    time.Time `json:"last_run,omitempty"`
	LastEvents int       `json:"last_events"`
	LastError  string    `json:"last_error,omitempty"`
}

// Run reconciles every cfg.every until ctx ends. Failures are logged and
// tried again; it returns nil when ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	r.log.Info("reconciliation running", "every", r.cfg.Every.D(), "settle", r.cfg.Settle.D(), "source", r.source)
	for {
		if _, _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconciliation failed; trying again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.poll):
		}
	}
}

var errLost = errors.New("reconcile: lease lost to another instance")

// RunOnce runs a reconciliation when one is due and no other instance
// holds the lease. ran says it did; events is how many it published.
func (r *Reconciler) RunOnce(ctx context.Context) (ran bool, events int, err error) {
	st, rev, err := r.load(ctx)
	if err != nil {
		return false, 0, err
	}
	now := r.now()
	if now.Before(st.NextAt) {
		return false, 0, nil
	}
	if st.Owner != "" && st.Owner != r.deps.Instance && now.Before(st.LeaseUntil) {
		r.observe("skipped", 0)
		return false, 0, nil
	}
	st.Owner, st.LeaseUntil = r.deps.Instance, now.Add(r.lease)
	if rev, err = r.save(ctx, st, rev); err != nil {
		if isConflict(err) {
			r.observe("skipped", 0) // another instance took it first
			return false, 0, nil
		}
		return false, 0, err
	}
	end := now.Add(-r.cfg.Settle.D()).Truncate(time.Second).Add(-time.Second)
	events, rev, err = r.scan(ctx, st, rev, st.Checkpoint, end)
	st.Owner, st.LeaseUntil, st.LastRun = "", time.Time{}, now
	if err != nil {
		if errors.Is(err, errLost) {
			return true, events, err
		}
		// keep the checkpoint; try again after a short pause
		st.NextAt, st.LastError = now.Add(min(r.cfg.Every.D(), time.Minute)), err.Error()
		if _, serr := r.save(context.WithoutCancel(ctx), st, rev); serr != nil {
			r.log.Warn("reconcile: release lease", "err", serr)
		}
		r.observe("failed", events)
		return true, events, err
	}
	if end.After(st.Checkpoint) {
		st.Checkpoint = end
	}
	st.NextAt, st.LastEvents, st.LastError = now.Add(r.cfg.Every.D()), events, ""
	if _, err := r.save(context.WithoutCancel(ctx), st, rev); err != nil {
		r.observe("failed", events)
		return true, events, fmt.Errorf("reconcile: save checkpoint: %w", err)
	}
	r.observe("ok", events)
	if events > 0 {
		r.log.Info("reconciliation: changes without an event published", "events", events, "checkpoint", st.Checkpoint)
	} else {
		r.log.Debug("reconciliation: nothing missed", "checkpoint", st.Checkpoint)
	}
	return true, events, nil
}

func (r *Reconciler) observe(result string, events int) {
	if r.deps.Observe != nil {
		r.deps.Observe(r.cfg.Portal, r.cfg.Entity, result, events)
	}
}

// load reads the entry, creating it on first use with a checkpoint one
// period back.
func (r *Reconciler) load(ctx context.Context) (State, uint64, error) {
	for {
		e, err := r.deps.State.Get(ctx, r.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			now := r.now()
			st := State{Checkpoint: now.Add(-r.cfg.Settle.D() - r.cfg.Every.D()).Truncate(time.Second), NextAt: now}
			b, _ := json.Marshal(st)
			rev, err := r.deps.State.Create(ctx, r.key, b)
			if err == nil {
				return st, rev, nil
			}
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another instance created it
			}
			return State{}, 0, fmt.Errorf("reconcile: create state: %w", err)
		}
		if err != nil {
			return State{}, 0, fmt.Errorf("reconcile: read state: %w", err)
		}
		var st State
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			r.log.Warn("reconcile: unreadable state; starting one period back", "err", err)
			st = State{Checkpoint: r.now().Add(-r.cfg.Settle.D() - r.cfg.Every.D()).Truncate(time.Second)}
		}
		return st, e.Revision(), nil
	}
}

func (r *Reconciler) save(ctx context.Context, st State, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	return r.deps.State.Update(ctx, r.key, b, rev)
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// row is one listed entity.
type row struct {
	ID         json.RawMessage `json:"ID"`
	DateModify string          `json:"DATE_MODIFY"`
	DateCreate string          `json:"DATE_CREATE"`
}

// scan lists the entities with from < DATE_MODIFY <= to, fifty at a time
// by ascending ID (a row changed again meanwhile leaves the window and is
// in the next one; the others do not move), and publishes an event for
// each change the seen records do not cover. It renews the lease on every
// page.
func (r *Reconciler) scan(ctx context.Context, st State, rev uint64, from, to time.Time) (int, uint64, error) {
	method := "crm." + r.cfg.Entity + ".list"
	lastID := int64(0)
	events := 0
	for {
		filter := map[string]any{
			">DATE_MODIFY":  from.Format(dateLayout),
			"<=DATE_MODIFY": to.Format(dateLayout),
		}
		if lastID > 0 {
			filter[">ID"] = strconv.FormatInt(lastID, 10)
		}
		res, err := r.deps.Client.Call(ctx, method, map[string]any{
			"filter": filter,
			"order":  map[string]any{"ID": "ASC"},
			"select": []any{"ID", "DATE_MODIFY", "DATE_CREATE"},
			"start":  -1,
		})
		if err != nil {
			return events, rev, fmt.Errorf("reconcile: %s: %w", method, err)
		}
		var rows []row
		if err := res.Decode(&rows); err != nil {
			return events, rev, fmt.Errorf("reconcile: %s: %w", method, err)
		}
		for _, rw := range rows {
			id, err := idOf(rw.ID)
			if err != nil {
				return events, rev, fmt.Errorf("reconcile: %s: %w", method, err)
			}
			lastID = max(lastID, id)
			n, err := r.check(ctx, id, rw)
			events += n
			if err != nil {
				return events, rev, err
			}
		}
		if len(rows) < 50 {
			return events, rev, nil
		}
		st.LeaseUntil = r.now().Add(r.lease)
		if rev, err = r.save(ctx, st, rev); err != nil {
			if isConflict(err) {
				return events, rev, errLost
			}
			return events, rev, err
		}
	}
}

func idOf(raw json.RawMessage) (int64, error) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad ID %s", raw)
	}
	return id, nil
}

// check publishes the event of one listed change unless the platform has
// that state already; it returns the events published.
func (r *Reconciler) check(ctx context.Context, id int64, rw row) (int, error) {
	ids := strconv.FormatInt(id, 10)
	modified, err := time.Parse(time.RFC3339, rw.DateModify)
	if err != nil {
		r.log.Warn("reconcile: unreadable DATE_MODIFY; publishing the change", "id", ids, "date_modify", rw.DateModify)
	} else {
		seen, ok, err := routes.Seen(ctx, r.deps.Seen, r.cfg.Portal, r.cfg.Entity, ids)
		if err != nil {
			return 0, fmt.Errorf("reconcile: read seen records: %w", err)
		}
		if ok && seen.Covers(modified) {
			return 0, nil
		}
	}
	verb := "UPDATE"
	if rw.DateCreate != "" && rw.DateCreate == rw.DateModify {
		verb = "ADD"
	}
	event := "ONCRM" + strings.ToUpper(r.cfg.Entity) + verb
	if err := r.publish(ctx, event, ids, rw.DateModify); err != nil {
		return 0, err
	}
	return 1, nil
}

// publish stores the event of a missed change, shaped like a Bitrix24
// outgoing-webhook event (params event, data[FIELDS][ID], ts) so that
// routes written for those work unchanged; reconcile=1 and
// data[FIELDS][DATE_MODIFY] say where it came from.
func (r *Reconciler) publish(ctx context.Context, event, id, modified string) error {
	now := r.now()
	params := map[string]string{
		"event":                     event,
		"data[FIELDS][ID]":          id,
		"data[FIELDS][DATE_MODIFY]": modified,
		"ts":                        strconv.FormatInt(now.Unix(), 10),
		"reconcile":                 "1",
		"portal":                    r.cfg.Portal,
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	ev := hookgate.Event{
		SpecVersion:     "1.0",
		ID:              hookgate.EventID(r.source, r.cfg.Portal+"/"+r.cfg.Entity+"/"+id+"/"+modified),
		Source:          "hookgate/" + r.source,
		Type:            event,
		Time:            now.UTC(),
		DataContentType: "application/json",
		Data: hookgate.EventData{
			WebhookID: r.source, Provider: Provider, Event: event, Params: params,
			Body: form.Encode(), ContentType: "application/x-www-form-urlencoded", Headers: map[string]string{},
		},
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	dup, err := r.deps.Publish(ctx, hookgate.InboundSubject(r.source, event), ev.ID, data)
	if err != nil {
		return fmt.Errorf("reconcile: publish %s of %s: %w", event, id, err)
	}
	if r.deps.Recorder != nil {
		outcome := hookgate.OutcomeAccepted
		if dup {
			outcome = hookgate.OutcomeDuplicate
		}
		r.deps.Recorder.Record(hookgate.Exchange{
			TS: now.UTC(), ExchangeID: hookgate.NewUUID(), EventID: ev.ID, Direction: hookgate.Inbound,
			Source: r.source, Provider: Provider, Event: event, Operation: "crm." + r.cfg.Entity + ".list",
			Status: 200, Outcome: outcome, Attempt: 1, RequestBody: ev.Data.Body,
		})
	}
	r.log.Debug("reconciliation: change without an event", "id", id, "date_modify", modified, "event_id", ev.ID)
	return nil
}
