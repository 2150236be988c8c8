package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// TestBatcherGathers: 120 concurrent gets go out as 3 batch requests
// (50, 50, 20); each caller gets its own deal, a missing one its own
// error, and each command has a history row with its event id.
func TestBatcherGathers(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(119)
	rec := &recorder{}
	c := setup(t, sim, config.Portal{}, WithRecorder(rec))
	var sizes []int
	var mu sync.Mutex
	bt := NewBatcher(c, time.Second, 0, WithBatchObserver(func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }))
	var wg sync.WaitGroup
	errs := make([]error, 120)
	titles := make([]string, 120)
	for i := range 120 {
		wg.Go(func() {
			ctx := WithEventID(context.Background(), "ev-"+strconv.Itoa(i+1))
			res, err := bt.Call(ctx, "crm.deal.get", map[string]any{"id": i + 1})
			errs[i] = err
			if err == nil {
				var d map[string]any
				_ = json.Unmarshal(res.Result, &d)
				titles[i], _ = d["TITLE"].(string)
			}
		})
	}
	wg.Wait()
	if n := sim.Requests("batch"); n != 3 {
		t.Errorf("batch requests = %d; want 3 (sizes %v)", n, sizes)
	}
	if n := sim.Nested("crm.deal.get"); n != 120 {
		t.Errorf("nested crm.deal.get = %d; want 120", n)
	}
	for i := range 119 {
		if errs[i] != nil || titles[i] != "Deal #"+strconv.Itoa(i+1) {
			t.Errorf("deal %d: %q, %v", i+1, titles[i], errs[i])
		}
	}
	var ae *APIError
	if !errors.As(errs[119], &ae) || ae.Description != "Not found" || IsTransient(errs[119]) {
		t.Errorf("deal 120: %v; want its own permanent Not found", errs[119])
	}
	rows := map[string]int{}
	for _, r := range rec.all() {
		if r.Operation == "crm.deal.get" {
			rows[r.EventID]++
		}
	}
	if len(rows) != 120 || rows["ev-7"] != 1 {
		t.Errorf("command rows for %d events (ev-7: %d); want one row for each of 120", len(rows), rows["ev-7"])
	}
}

// TestBatcherLoneCall: a lone call waits at most the batch wait and goes
// out as a plain call.
func TestBatcherLoneCall(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.SeedDeals(1)
	c := setup(t, sim, config.Portal{})
	bt := NewBatcher(c, 100*time.Millisecond, 0)
	start := time.Now()
	if _, err := bt.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("lone call took %v; want the batch wait (100ms) and little more", took)
	}
	if sim.Requests("batch") != 0 || sim.Requests("crm.deal.get") != 1 {
		t.Errorf("requests: batch %d, crm.deal.get %d; want 0, 1", sim.Requests("batch"), sim.Requests("crm.deal.get"))
	}
}

// TestBatchOneTokenAndOperating: a batch of 50 takes one request from the
// portal's bucket (a bucket of 3 serves 150 calls without a 503), and its
// nested commands count towards their method's operating limit: once
// crm.deal.get is over it, its commands fail with OPERATION_TIME_LIMIT
// inside the batch, the client holds the method, and the next call fails
// at once without a request.
func TestBatchOneTokenAndOperating(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(3, 0.001),
		bitrix24test.WithOperatingLimit(100*time.Second, 10*time.Minute), bitrix24test.WithOperatingCost(time.Second))
	sim.SeedDeals(50)
	c := setup(t, sim, config.Portal{Rate: &config.Rate{PerSecond: 1000, Burst: 1000}}, WithRetries(0))
	bt := NewBatcher(c, time.Second, 0)
	var failed, limited atomic.Int32
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				_, err := bt.Call(context.Background(), "crm.deal.get", map[string]any{"id": i + 1})
				if err != nil {
					failed.Add(1)
					if isCode(err, CodeOperationTimeLimit) {
						limited.Add(1)
						if d, ok := RetryDelay(err); !ok || d < 9*time.Minute {
							t.Errorf("round %d: retry delay %v, %v; want until the reset, about 10 min", round, d, ok)
						}
					}
				}
			})
		}
		wg.Wait()
	}
	if n := sim.Answers(CodeQueryLimitExceeded); n != 0 {
		t.Errorf("QUERY_LIMIT_EXCEEDED answers = %d; want 0", n)
	}
	// 100 s of operating at 1 s a command: the first 100 commands run,
	// the third batch's 50 are over the limit.
	if failed.Load() != 50 || limited.Load() != 50 {
		t.Errorf("failed %d, OPERATION_TIME_LIMIT %d; want 50, 50", failed.Load(), limited.Load())
	}
	before := sim.TotalRequests()
	_, err := bt.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1})
	if !isCode(err, CodeOperationTimeLimit) || sim.TotalRequests() != before {
		t.Errorf("held method: %v, %d requests; want OPERATION_TIME_LIMIT without a request", err, sim.TotalRequests()-before)
	}
}
