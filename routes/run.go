package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/outbound/delivery"
)

const (
	fetchWait    = 5 * time.Second
	retryPause   = time.Second // before an event whose jobs could not be stored comes back
	inboundAck   = 30 * time.Second
	enqueueLimit = 10 * time.Second
)

// Run consumes the inbound stream and runs the route jobs (the queue's
// workers) until ctx ends. It returns nil after a graceful stop, also one
// that comes while it is still setting up.
func (e *Engine) Run(ctx context.Context, js jetstream.JetStream) error {
	err := e.run(ctx, js)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func (e *Engine) run(ctx context.Context, js jetstream.JetStream) error {
	stream := e.deps.Stream
	if stream == "" {
		var err error
		if stream, err = js.StreamNameBySubject(ctx, events.InboundSubjects); err != nil {
			return fmt.Errorf("routes: find the inbound stream: %w", err)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       e.deps.Consumer,
		Description:   "hookgate routes: events to route jobs, in stream order",
		FilterSubject: events.InboundSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       inboundAck,
		MaxAckPending: 1,
		MaxDeliver:    -1,
	}
	// A new consumer starts with the events stored since New; an existing
	// one keeps its start (the server refuses to change it) and position.
	if old, err := js.Consumer(ctx, stream, cc.Durable); err == nil {
		cc.DeliverPolicy, cc.OptStartTime = old.CachedInfo().Config.DeliverPolicy, old.CachedInfo().Config.OptStartTime
	} else {
		start := e.created.Add(-time.Second) // the server's clock may lag a little
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return fmt.Errorf("routes: consumer %s on %s: %w", e.deps.Consumer, stream, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var qerr error
	wg.Go(func() { e.consume(rctx, cons) })
	wg.Go(func() {
		if qerr = e.deps.Queue.Run(rctx, e.Handle); qerr != nil {
			cancel() // no workers: stop routing too
		}
	})
	wg.Wait()
	return qerr
}

func (e *Engine) consume(ctx context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		msg, err := events.FetchOne(ctx, cons, fetchWait)
		if err != nil {
			e.log.Warn("fetch event", "err", err)
			events.Pause(ctx, retryPause)
			continue
		}
		if msg == nil {
			continue
		}
		e.routeMsg(ctx, msg)
	}
}

// routeMsg enqueues the jobs of one inbound message, then acknowledges it.
func (e *Engine) routeMsg(ctx context.Context, msg jetstream.Msg) {
	var ev hookgate.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil || ev.ID == "" {
		e.log.Error("unreadable event, not routed", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("unreadable event")
		return
	}
	// Storing jobs finishes even when ctx ends meanwhile.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueLimit)
	defer cancel()
	sctx, span := startRouting(sctx, &ev)
	defer span.End()
	js, err := e.Jobs(&ev, msg.Data())
	endRouting(sctx, span, &ev, js, err)
	if err == nil {
		for _, j := range js {
			if err = e.deps.Queue.Enqueue(sctx, j); err != nil {
				break
			}
		}
	}
	if err != nil {
		e.log.WarnContext(sctx, "route event: jobs not stored, retrying", "event_id", ev.ID, "err", err)
		_ = msg.NakWithDelay(retryPause)
		return
	}
	if err := msg.DoubleAck(sctx); err != nil {
		// Redelivered later; its jobs de-duplicate.
		e.log.Warn("ack event", "event_id", ev.ID, "err", err)
	}
	if len(js) > 0 {
		e.log.Debug("event routed", "event_id", ev.ID, "jobs", len(js))
	}
}

// Handle runs one route job: the Bitrix24 call, then the delivery. It is
// the jobs.Handler Run gives the queue. A coalesced run (j.Covers) makes
// one call and one delivery of the latest event for all of them.
func (e *Engine) Handle(ctx context.Context, j *jobs.Job, attempt int) error {
	err := e.handle(ctx, j, attempt)
	if err == nil || jobs.IsPermanent(err) || jobs.LastAttempt(ctx) {
		e.finished(j)
	}
	return err
}

func (e *Engine) handle(ctx context.Context, j *jobs.Job, attempt int) error {
	var p payload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("unreadable route job: %w", err))
	}
	r := e.byName[p.Route]
	if r == nil {
		return jobs.Permanent(fmt.Errorf("route %q is no longer configured", p.Route))
	}
	var ev hookgate.Event
	if err := json.Unmarshal(p.Event, &ev); err != nil {
		return jobs.Permanent(fmt.Errorf("unreadable event in route job: %w", err))
	}
	_, event := sourceOf(&ev)
	if r.cfg.Deliver != nil {
		off, err := e.disabled(ctx, r.cfg.Name)
		if err != nil {
			return err
		}
		if off {
			return jobs.Permanent(fmt.Errorf("%w: %q answered 410 Gone; enable the route, then replay", ErrDisabled, r.cfg.Name))
		}
	}

	var enrichment map[string]any
	var state *entityState // echo.go: the enriched entity, for two-way sync
	if c := r.cfg.Call; c != nil {
		rendered, err := newRenderer(&ev).render(r.params)
		if err != nil {
			return jobs.Permanent(fmt.Errorf("render call params: %w", err))
		}
		params, _ := rendered.(map[string]any)
		cctx := outbound.WithAttempt(outbound.WithEventID(ctx, ev.ID), attempt)
		if c.Idempotent {
			cctx = outbound.WithIdempotent(cctx)
		}
		res, err := e.call(cctx, r, params)
		if err != nil {
			return e.callError(ctx, c.Portal, c.Method, err)
		}
		if r.sync != nil && r.sync.write {
			e.afterWrite(cctx, r, params, res)
		}
		if r.sync != nil && r.sync.read {
			var done bool
			if state, done, err = e.beforeDeliver(ctx, r, &ev, event, res); err != nil || done {
				return err
			}
		}
		enrichment = map[string]any{"portal": c.Portal, "method": c.Method, "result": res.Result}
	}
	d := r.cfg.Deliver
	if d == nil {
		return nil
	}
	var covers []string
	for _, c := range j.Covers {
		covers = append(covers, c.EventID)
	}
	body, err := enrich(p.Event, enrichment, covers)
	if err != nil {
		return jobs.Permanent(err)
	}
	secret, err := e.deps.Secrets.Secret(ctx, d.Secret)
	if err != nil {
		return fmt.Errorf("read delivery secret: %w", err)
	}
	dctx := delivery.WithMeta(ctx, delivery.Meta{
		Source: r.cfg.Name, Event: event, EventID: ev.ID,
		Attempt: attempt, Last: jobs.LastAttempt(ctx), Timeout: d.Timeout.D(),
		Covers: covers,
	})
	_, err = e.deps.Delivery.Deliver(dctx, d.URL, secret, j.ID, body)
	switch {
	case err == nil:
		if state != nil {
			e.recordSeen(ctx, r, state)
		}
		return nil
	case errors.Is(err, delivery.ErrGone):
		rec := DisabledRoute{Route: r.cfg.Name, URL: d.URL, JobID: j.ID, EventID: ev.ID, Error: err.Error(), At: e.now()}
		if derr := e.disable(ctx, rec); derr != nil {
			// Not disabled: retry, the next 410 tries again.
			return fmt.Errorf("%w (and %v)", err, derr)
		}
		e.log.Warn("platform answered 410 Gone: route deliveries disabled", "route", r.cfg.Name, "url", d.URL, "event_id", ev.ID)
		return jobs.Permanent(err)
	}
	if after, ok := delivery.RetryAfter(err); ok {
		return jobs.RetryAfter(after, err)
	}
	return err
}

// callError maps a Bitrix24 failure to the job's next step.
func (e *Engine) callError(ctx context.Context, portal, method string, err error) error {
	err = fmt.Errorf("call %s %s: %w", portal, method, err)
	if ctx.Err() != nil {
		return err // stopping: handed back, not a verdict on the call
	}
	// Retry-After, or OPERATION_TIME_LIMIT's reset: the client's own wait
	if d, ok := outbound.RetryDelay(err); ok {
		return jobs.RetryAfter(d, err)
	}
	if !outbound.IsTransient(err) {
		return jobs.Permanent(err)
	}
	return err
}

// enrich returns the event with data.enrichment set (the event unchanged
// when there is none), keeping every member of the original. A coalesced
// delivery also lists, in data.coalesced, the ids of the earlier events
// it covers followed by its own.
func enrich(raw json.RawMessage, enrichment map[string]any, covers []string) ([]byte, error) {
	if enrichment == nil && len(covers) == 0 {
		return raw, nil
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("enrich event: %w", err)
	}
	var data map[string]json.RawMessage
	if len(ev["data"]) > 0 {
		if err := json.Unmarshal(ev["data"], &data); err != nil {
			return nil, fmt.Errorf("enrich event data: %w", err)
		}
	}
	if data == nil {
		data = map[string]json.RawMessage{}
	}
	if enrichment != nil {
		en, err := marshal(enrichment)
		if err != nil {
			return nil, fmt.Errorf("enrich event: %w", err)
		}
		data["enrichment"] = en
	}
	if len(covers) > 0 {
		var id string
		if err := json.Unmarshal(ev["id"], &id); err != nil {
			return nil, fmt.Errorf("enrich event: id: %w", err)
		}
		ids, err := marshal(append(slices.Clone(covers), id))
		if err != nil {
			return nil, fmt.Errorf("enrich event: %w", err)
		}
		data["coalesced"] = ids
	}
	var err error
	if ev["data"], err = marshal(data); err != nil {
		return nil, fmt.Errorf("enrich event: %w", err)
	}
	return marshal(ev)
}

// marshal is json.Marshal without HTML escaping: the platform gets the
// portal's strings as they were.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// call makes a route's Bitrix24 call: a read inside the portal's next
// batch request; alone when the portal has no batcher, the route says
// call.batch: false, or the method writes (a write keeps the client's
// ambiguous-write handling, which a batch request cannot give it).
func (e *Engine) call(ctx context.Context, r *route, params map[string]any) (*outbound.Result, error) {
	c := r.cfg.Call
	if bt := e.deps.Batchers[c.Portal]; bt != nil && (c.Batch == nil || *c.Batch) && !outbound.IsWrite(c.Method) {
		return bt.Call(ctx, c.Method, params)
	}
	return e.deps.Portals[c.Portal].Call(ctx, c.Method, params)
}

// Observer receives routing metrics. Its functions are called from job
// workers and must not block.
type Observer struct {
	// Coalesced reports a delivery that covered n events of route (n > 1).
	Coalesced func(route string, n int)
	// Lag reports, when a job of route is done (delivered, or
	// dead-lettered), how old its event is: under a backlog, how far
	// behind the route runs.
	Lag func(route string, age time.Duration)
}

// finished reports a job that left the queue to the observer.
func (e *Engine) finished(j *jobs.Job) {
	o := e.deps.Observe
	if o.Coalesced == nil && o.Lag == nil {
		return
	}
	var p struct {
		Route string `json:"route"`
		Event struct {
			Time time.Time `json:"time"`
		} `json:"event"`
	}
	if json.Unmarshal(j.Payload, &p) != nil {
		return
	}
	if o.Coalesced != nil && len(j.Covers) > 0 {
		o.Coalesced(p.Route, len(j.Covers)+1)
	}
	if o.Lag != nil && !p.Event.Time.IsZero() {
		// The oldest event of a coalesced run is the first covered one.
		t := p.Event.Time
		if len(j.Covers) > 0 {
			var first struct {
				Event struct {
					Time time.Time `json:"time"`
				} `json:"event"`
			}
			if json.Unmarshal(j.Covers[0].Payload, &first) == nil && !first.Event.Time.IsZero() {
				t = first.Event.Time
			}
		}
		o.Lag(p.Route, max(e.now().Sub(t), 0))
	}
}
