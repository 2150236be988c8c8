package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/telemetry"
)

// DefaultBatchWait is how long a Batcher waits for a batch to fill.
const DefaultBatchWait = 200 * time.Millisecond

// Batcher gathers single calls to one portal into batch requests of up
// to 50 commands with halt=0: the batch takes one token from the portal's
// bucket, and each command's result or error goes back to its own caller.
// The first call of a batch waits at most the batch wait for others to
// join; a lone call goes out as a plain call. It is safe for concurrent
// use.
type Batcher struct {
	b       *Bitrix24
	wait    time.Duration
	size    int
	observe func(n int)

	mu          sync.Mutex
	pending     []*batchCall
	timer       *time.Timer
	dispatching bool // a dispatch goroutine runs
}

type batchCall struct {
	ctx     context.Context
	method  string
	params  map[string]any
	query   string
	eventID string
	attempt int
	at      time.Time        // when it joined
	done    chan batchAnswer // buffered: the sender never blocks
}

type batchAnswer struct {
	res *Result
	err error
}

// BatcherOption configures a Batcher.
type BatcherOption func(*Batcher)

// WithBatchObserver reports the number of commands of every request the
// Batcher sends (1 for a lone call).
func WithBatchObserver(f func(n int)) BatcherOption { return func(bt *Batcher) { bt.observe = f } }

// NewBatcher returns a Batcher over b. wait is the longest a call waits
// for a batch to fill (0: DefaultBatchWait); size the most commands per
// batch (0 or more than MaxBatch: MaxBatch; 1 sends every call alone).
func NewBatcher(b *Bitrix24, wait time.Duration, size int, opts ...BatcherOption) *Batcher {
	if wait <= 0 {
		wait = DefaultBatchWait
	}
	if size <= 0 || size > MaxBatch {
		size = MaxBatch
	}
	bt := &Batcher{b: b, wait: wait, size: size}
	for _, o := range opts {
		o(bt)
	}
	return bt
}

// Call runs method with params inside the next batch. The answer is the
// command's own: its result, or its error as an *APIError (Status 0); a
// failed batch request fails every command in it. The event id and
// attempt carried by ctx name the command's history row.
func (bt *Batcher) Call(ctx context.Context, method string, params map[string]any) (*Result, error) {
	if err := checkMethod(method); err != nil {
		return nil, err
	}
	q, err := EncodeParams(params)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	// A method held for its operating limit waits here (or fails at
	// once), so that it does not hold a whole batch back.
	if err := bt.b.waitHold(ctx, method); err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	c := &batchCall{ctx: ctx, method: method, params: params, query: q,
		eventID: EventID(ctx), attempt: firstAttempt(ctx), at: time.Now(), done: make(chan batchAnswer, 1)}
	bt.mu.Lock()
	bt.pending = append(bt.pending, c)
	switch {
	case len(bt.pending) >= bt.size:
		bt.flushLocked()
	case len(bt.pending) == 1:
		bt.timer = time.AfterFunc(bt.wait, bt.flush)
	}
	bt.mu.Unlock()
	select {
	case a := <-c.done:
		return a.res, a.err
	case <-ctx.Done():
		return nil, fmt.Errorf("call %s: %w", method, ctx.Err())
	}
}

func (bt *Batcher) flush() {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	bt.flushLocked()
}

// flushLocked hands the pending calls to the dispatcher, starting it
// when it is not running.
func (bt *Batcher) flushLocked() {
	if bt.timer != nil {
		bt.timer.Stop()
		bt.timer = nil
	}
	if bt.dispatching || len(bt.pending) == 0 {
		return
	}
	bt.dispatching = true
	go bt.dispatch()
}

// dispatch sends the pending calls, a batch at a time, each when the
// portal's bucket has a token for it: calls that come while it waits for
// the token join the batch, so batches fill up when the rate is the
// limit. While tokens are plenty (the burst) a batch that is not full
// still waits until its oldest call has waited the batch wait. It ends
// when nothing is pending, or hands over to the timer.
func (bt *Batcher) dispatch() {
	for {
		waited := false
		for d := bt.b.tokenWait(); d > 0; d = bt.b.tokenWait() {
			time.Sleep(d)
			waited = true
		}
		bt.mu.Lock()
		if !waited && len(bt.pending) > 0 && len(bt.pending) < bt.size {
			if age := time.Since(bt.pending[0].at); age < bt.wait {
				// not full, not old: the timer (or the call that
				// fills it) dispatches it
				bt.dispatching = false
				if bt.timer != nil {
					bt.timer.Stop()
				}
				bt.timer = time.AfterFunc(bt.wait-age, bt.flush)
				bt.mu.Unlock()
				return
			}
		}
		n := min(len(bt.pending), bt.size)
		calls := slices.Clone(bt.pending[:n])
		bt.pending = bt.pending[n:]
		if len(bt.pending) == 0 {
			bt.pending = nil
			bt.dispatching = false
			if bt.timer != nil {
				bt.timer.Stop()
				bt.timer = nil
			}
		}
		more := bt.dispatching
		bt.mu.Unlock()
		if n > 0 {
			go bt.send(calls)
		}
		if !more {
			return
		}
	}
}

// send makes one request for calls: a plain call for one, else a batch.
func (bt *Batcher) send(calls []*batchCall) {
	if bt.observe != nil {
		bt.observe(len(calls))
	}
	if len(calls) == 1 {
		c := calls[0]
		res, err := bt.b.call(c.ctx, c.method, c.query)
		c.done <- batchAnswer{res, err}
		return
	}
	// The batch serves many callers: none of them may cancel it.
	ctx := context.WithoutCancel(calls[0].ctx)
	ctx = WithEventID(ctx, "")
	ctx = WithAttempt(ctx, 1)
	others := make([]context.Context, 0, len(calls)-1)
	for _, c := range calls[1:] {
		others = append(others, c.ctx)
	}
	ctx = withBatchLinks(ctx, others)
	cmds := make([]BatchCmd, len(calls))
	for i, c := range calls {
		cmds[i] = BatchCmd{Key: "c" + strconv.Itoa(i), Method: c.method, Params: c.params}
	}
	start := bt.b.opts.clock.Now()
	res, err := bt.b.Batch(ctx, cmds, false)
	took := bt.b.opts.clock.Now().Sub(start)
	for i, c := range calls {
		var a batchAnswer
		key := cmds[i].Key
		switch {
		case err != nil:
			a.err = fmt.Errorf("call %s in a batch: %w", c.method, err)
		case res.Errors[key] != nil:
			a.err = fmt.Errorf("call %s in a batch: %w", c.method, res.Errors[key])
		default:
			raw, ok := res.Results[key]
			if !ok {
				a.err = fmt.Errorf("call %s in a batch: %w", c.method,
					&APIError{Code: CodeUnexpectedAnswer, Description: "no result for command " + key})
				break
			}
			a.res = &Result{Result: raw, Time: res.Time, Attempts: 1}
			if t, ok := res.Times[key]; ok {
				a.res.Time = t
			}
			if n, ok := res.Totals[key]; ok {
				a.res.Total = &n
			}
			if n, ok := res.Nexts[key]; ok {
				a.res.Next = &n
			}
		}
		bt.record(c, start, took, a, err == nil)
		c.done <- a
	}
}

// record writes the command's own history row (the batch request has its
// row too, without an event id): the event's trail shows its call.
func (bt *Batcher) record(c *batchCall, start time.Time, took time.Duration, a batchAnswer, sent bool) {
	rec := bt.b.opts.recorder
	if rec == nil {
		return
	}
	row := hookgate.Exchange{
		TS:          start.UTC(),
		ExchangeID:  hookgate.NewUUID(),
		EventID:     c.eventID,
		Direction:   hookgate.Outbound,
		Source:      bt.b.portal,
		Provider:    "bitrix24",
		Operation:   c.method,
		HTTPMethod:  http.MethodPost,
		URL:         bt.b.base + hookgate.Redacted + "/batch.json",
		Attempt:     uint16(min(c.attempt, 65535)),
		DurationMS:  float32(took.Seconds() * 1000),
		RequestBody: c.query,
		Outcome:     hookgate.OutcomeOK,
		TraceID:     telemetry.TraceID(c.ctx),
	}
	if sent {
		row.Status = http.StatusOK
	}
	if a.err != nil {
		row.Outcome = hookgate.OutcomeFailed
		row.Error = errorCode(a.err)
	} else if b, err := json.Marshal(a.res.Result); err == nil {
		row.ResponseBody = string(b)
	}
	// The secret is not in a command, but a portal may echo anything.
	if r := bt.b.redactor.Load(); r != nil {
		row.RequestBody, row.ResponseBody = r.r.Redact(row.RequestBody), r.r.Redact(row.ResponseBody)
	}
	rec.Record(row)
}
