package routes

// Two-way sync (issue 18, docs/sync.md): echo suppression and the record
// of what the platform was sent, which reconciliation reads.
//
// Echo suppression works by fingerprint. After a route writes an entity
// to Bitrix24 (crm.<entity>.add or .update) it reads the entity back
// (crm.<entity>.get) and keeps a fingerprint of that state (SHA-256 of its
// canonical JSON, DATE_MODIFY included) in the KV bucket hookgate_echo for
// sync.echo_ttl. A route that enriches an event with crm.<entity>.get and
// delivers it compares the state it read with the fingerprints: a match is
// exactly the state hookgate wrote, the echo of its own write, and is not
// delivered (history outcome "suppressed", metric
// hookgate_echo_suppressed_total). Any other state, including one where a
// user changed something after hookgate's write, differs in a field or in
// DATE_MODIFY, and is delivered.
//
// MODIFY_BY_ID helps twice, where the portal reports it: a read-back
// whose MODIFY_BY_ID is not the webhook's user already includes someone
// else's change, so its fingerprint is not kept; and an enriched state
// last modified by the webhook's user that matches no fingerprint yet
// waits up to echoWait for one (the write's read-back may land after
// the echo's enrichment).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
)

// Names and defaults of two-way sync on the bus.
const (
	// EchoBucketName holds the fingerprints of states hookgate wrote,
	// each for sync.echo_ttl.
	EchoBucketName = "hookgate_echo"
	// SeenBucketName holds, per portal, entity type and id, the newest
	// state the platform was sent (or that was hookgate's own write).
	SeenBucketName = "hookgate_sync_seen"
	// SeenTTL is how long a seen record is kept: reconciliation looks
	// only at recent changes.
	SeenTTL = 7 * 24 * time.Hour
	// ErrorEcho is the history error code of a suppressed echo.
	ErrorEcho = "echo"
)

// echoWait is the longest an enriched state last modified by the
// webhook's user waits for the fingerprint of hookgate's write.
var echoWait = 5 * time.Second

// Sync is the two-way sync state of an Engine (Deps.Sync).
type Sync struct {
	echo  jetstream.KeyValue // nil: echo suppression off
	seen  jetstream.KeyValue
	users map[string]string // portal id → webhook user id
	// written holds <portal>.<entity> of the routes' writes: only those
	// entities can have echoes (set by New).
	written map[string]bool
	// reconciled holds <portal>.<entity> of the reconcile entries: only
	// those need seen records.
	reconciled map[string]bool
	// Suppressed is called for every echo not delivered (metrics).
	Suppressed func(route string)
	log        *slog.Logger
}

// OpenSync opens (creating them if needed) the sync buckets on js:
// fingerprints kept for ttl (no echo bucket when echo is false) and the
// seen records. users maps portal ids to the webhook's user id;
// reconciled lists the <portal>.<entity> pairs reconciliation reads seen
// records of (config.Reconcile).
func OpenSync(ctx context.Context, js jetstream.JetStream, replicas int, echo bool, ttl time.Duration, users map[string]string, reconciled []string, log *slog.Logger) (*Sync, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sync{users: users, log: log, written: map[string]bool{}, reconciled: map[string]bool{}}
	for _, k := range reconciled {
		s.reconciled[k] = true
	}
	var err error
	if echo {
		if ttl <= 0 {
			ttl = config.DefaultEchoTTL
		}
		s.echo, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: EchoBucketName, Description: "hookgate: fingerprints of entity states hookgate wrote to Bitrix24",
			TTL: ttl, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		})
		if err != nil {
			return nil, fmt.Errorf("routes: bucket %s: %w", EchoBucketName, err)
		}
	}
	if s.seen, err = SeenBucket(ctx, js, replicas); err != nil {
		return nil, err
	}
	return s, nil
}

// Writes reports whether a route writes CRM entities (crm.<entity>.add or
// .update): only then can an event be an echo.
func Writes(routes []config.Route) bool {
	for _, rc := range routes {
		if r := roleOf(rc); r != nil && r.write {
			return true
		}
	}
	return false
}

// SeenBucket opens (creating it if needed) the bucket of seen records.
func SeenBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SeenBucketName, Description: "hookgate: newest entity state the platform was sent, per portal, entity and id",
		TTL: SeenTTL, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("routes: bucket %s: %w", SeenBucketName, err)
	}
	return kv, nil
}

// crmMethod splits crm.<entity>.<verb>; ok is false for other methods.
var crmMethod = regexp.MustCompile(`^crm\.([a-z]+)\.(get|add|update)$`)

// syncRole is what a route does for two-way sync.
type syncRole struct {
	entity string
	write  bool // crm.<entity>.add/update: remember what was written
	read   bool // crm.<entity>.get and deliver: suppress echoes, record seen
}

func roleOf(rc config.Route) *syncRole {
	if rc.Call == nil {
		return nil
	}
	m := crmMethod.FindStringSubmatch(strings.ToLower(rc.Call.Method))
	if m == nil {
		return nil
	}
	switch m[2] {
	case "add", "update":
		return &syncRole{entity: m[1], write: true}
	case "get":
		if rc.Deliver != nil {
			return &syncRole{entity: m[1], read: true}
		}
	}
	return nil
}

// SeenRecord is the newest state of an entity the platform has: its
// DATE_MODIFY, and when it was read, by the portal's clock.
type SeenRecord struct {
	DateModify time.Time `json:"date_modify"`
	ReadAt     time.Time `json:"read_at"`
}

// Covers reports whether the record includes a change made at modified
// (a DATE_MODIFY, whole seconds): a newer state, or the same second read
// in a later second, after every change of that second.
func (r SeenRecord) Covers(modified time.Time) bool {
	switch {
	case r.DateModify.After(modified):
		return true
	case r.DateModify.Equal(modified):
		return !r.ReadAt.Before(modified.Add(time.Second))
	}
	return false
}

// SeenKey is the key of an entity's record in the seen bucket.
func SeenKey(portal, entity, id string) string { return portal + "." + entity + "." + id }

// Seen returns the record of an entity (ok false when there is none).
func Seen(ctx context.Context, kv jetstream.KeyValue, portal, entity, id string) (SeenRecord, bool, error) {
	e, err := kv.Get(ctx, SeenKey(portal, entity, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SeenRecord{}, false, nil
	}
	if err != nil {
		return SeenRecord{}, false, err
	}
	var r SeenRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return SeenRecord{}, false, nil // unreadable: as if none
	}
	return r, true, nil
}

// entityState is a crm.<entity>.get result, decoded.
type entityState struct {
	id          string
	fingerprint string
	modified    time.Time // DATE_MODIFY, zero when absent
	modifiedBy  string    // MODIFY_BY_ID, "" when absent
	readAt      time.Time // the answer's time.finish
}

func stateOf(res *outbound.Result) (*entityState, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(res.Result)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("entity state is not an object: %v", err)
	}
	canon, err := json.Marshal(m) // map keys sorted: canonical
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canon)
	st := &entityState{id: fmt.Sprint(m["ID"]), fingerprint: hex.EncodeToString(sum[:16])}
	if s, ok := m["DATE_MODIFY"].(string); ok {
		st.modified, _ = time.Parse(time.RFC3339, s)
	}
	if v, ok := m["MODIFY_BY_ID"]; ok && v != nil {
		st.modifiedBy = fmt.Sprint(v)
	}
	if f := res.Time.Finish; f > 0 {
		st.readAt = time.Unix(0, int64(f*1e9))
	}
	return st, nil
}

func echoKey(portal, entity string, st *entityState) string {
	return portal + "." + entity + "." + st.id + "." + st.fingerprint
}

// afterWrite remembers the state a write left: it reads the entity back
// and keeps its fingerprint. Failures are logged, never returned: the
// write happened, and a job retry would repeat it; the echo is then
// delivered as a change.
func (e *Engine) afterWrite(ctx context.Context, r *route, params map[string]any, res *outbound.Result) {
	s := e.deps.Sync
	if s.echo == nil {
		return
	}
	portal := r.cfg.Call.Portal
	id := writtenID(params, res)
	if id == "" {
		e.log.Warn("echo: no entity id after the write; its echo will be delivered", "route", r.cfg.Name)
		return
	}
	got, err := e.deps.Portals[portal].Call(ctx, "crm."+r.sync.entity+".get", map[string]any{"id": id})
	if err != nil {
		e.log.Warn("echo: read-back after the write failed; its echo will be delivered", "route", r.cfg.Name, "id", id, "err", err)
		return
	}
	st, err := stateOf(got)
	if err != nil {
		e.log.Warn("echo: read-back unreadable", "route", r.cfg.Name, "id", id, "err", err)
		return
	}
	if user := s.users[portal]; st.modifiedBy != "" && user != "" && st.modifiedBy != user {
		// someone changed it between the write and the read-back: that
		// state is theirs, and its event must reach the platform
		e.log.Info("echo: entity changed by another user since the write; not remembered", "route", r.cfg.Name, "id", id, "modify_by_id", st.modifiedBy)
		return
	}
	if _, err := s.echo.Put(ctx, echoKey(portal, r.sync.entity, st), []byte(st.modified.UTC().Format(time.RFC3339))); err != nil {
		e.log.Warn("echo: fingerprint not stored; its echo will be delivered", "route", r.cfg.Name, "id", id, "err", err)
	}
	// the platform has this state (it wrote it): reconciliation need not
	// send it back, even after the fingerprint expired
	e.recordSeen(ctx, r, st)
}

// writtenID is the id of the entity a write touched: an add's result, an
// update's id param.
func writtenID(params map[string]any, res *outbound.Result) string {
	for k, v := range params {
		if strings.EqualFold(k, "id") {
			return strings.TrimSpace(fmt.Sprint(v))
		}
	}
	var n json.Number
	if json.Unmarshal(res.Result, &n) == nil {
		return n.String()
	}
	var s string
	if json.Unmarshal(res.Result, &s) == nil {
		if _, err := strconv.Atoi(s); err == nil {
			return s
		}
	}
	return ""
}

// isEcho reports whether an enriched state is one hookgate wrote.
func (e *Engine) isEcho(ctx context.Context, r *route, st *entityState) (bool, error) {
	s := e.deps.Sync
	portal := r.cfg.Call.Portal
	if s.echo == nil || st.id == "" || st.id == "<nil>" || !s.written[portal+"."+r.sync.entity] {
		return false, nil // no route writes this entity: nothing can be an echo
	}
	key := echoKey(portal, r.sync.entity, st)
	wait := time.Duration(0)
	if user := s.users[portal]; user != "" && st.modifiedBy == user {
		wait = echoWait // hookgate's user changed it last: its fingerprint may be on the way
	}
	deadline := time.Now().Add(wait)
	for {
		_, err := s.echo.Get(ctx, key)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return false, fmt.Errorf("read echo fingerprints: %w", err)
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// beforeDeliver checks an enriched event: an echo is recorded as
// suppressed and reported done. st is nil when the result is not an
// entity state.
func (e *Engine) beforeDeliver(ctx context.Context, r *route, ev *hookgate.Event, event string, res *outbound.Result) (st *entityState, done bool, err error) {
	st, serr := stateOf(res)
	if serr != nil {
		return nil, false, nil
	}
	echo, err := e.isEcho(ctx, r, st)
	if err != nil || !echo {
		return st, false, err
	}
	s := e.deps.Sync
	if e.deps.Recorder != nil {
		e.deps.Recorder.Record(hookgate.Exchange{
			TS: e.now().UTC(), ExchangeID: hookgate.NewUUID(), EventID: ev.ID,
			Direction: hookgate.Outbound, Source: r.cfg.Name, Provider: "http", Event: event,
			Operation: "deliver", HTTPMethod: "POST", Outcome: hookgate.OutcomeSuppressed, Error: ErrorEcho,
			Attempt: 1,
		})
	}
	if s.Suppressed != nil {
		s.Suppressed(r.cfg.Name)
	}
	e.log.Debug("echo of hookgate's own write: not delivered", "route", r.cfg.Name, "event_id", ev.ID, "id", st.id)
	e.recordSeen(ctx, r, st)
	return st, true, nil
}

// recordSeen notes that the platform has st (delivered, or its own write).
func (e *Engine) recordSeen(ctx context.Context, r *route, st *entityState) {
	s := e.deps.Sync
	portal := r.cfg.Call.Portal
	if st == nil || st.modified.IsZero() || st.id == "" || !s.reconciled[portal+"."+r.sync.entity] {
		return // not reconciled: nobody reads the record
	}
	rec := SeenRecord{DateModify: st.modified.UTC(), ReadAt: st.readAt.UTC()}
	if old, ok, err := Seen(ctx, s.seen, portal, r.sync.entity, st.id); err == nil && ok &&
		(old.DateModify.After(rec.DateModify) || (old.DateModify.Equal(rec.DateModify) && old.ReadAt.After(rec.ReadAt))) {
		return // a newer state is recorded
	}
	b, _ := json.Marshal(rec)
	if _, err := s.seen.Put(ctx, SeenKey(portal, r.sync.entity, st.id), b); err != nil {
		e.log.Warn("sync: seen record not stored; reconciliation may send this change again", "route", r.cfg.Name, "id", st.id, "err", err)
	}
}
