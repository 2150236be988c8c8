package routes_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
)

// TestCoalesceLatest: events of a deal that wait behind its running
// delivery are served by one batched call and one delivery of the latest,
// listing every event id; another deal is not held back meanwhile, and
// history has a delivery row for every event id.
func TestCoalesceLatest(t *testing.T) {
	e := newEnv(t)
	e.routes[0].Coalesce = config.CoalesceLatest
	e.batchers = map[string]*outbound.Batcher{"main": outbound.NewBatcher(e.portal, 50*time.Millisecond, 0)}
	release := make(chan struct{})
	var once sync.Once
	e.platform.set(func(n int) (int, string) {
		if n == 0 {
			<-release
		}
		return http.StatusOK, ""
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	e.start()
	first := e.publish("ONCRMDEALUPDATE", 5, "c-1", true)
	eventually(t, 10*time.Second, "the first delivery to start", func() bool { return len(e.platform.all()) == 1 })
	var later []string
	for _, ts := range []string{"c-2", "c-3", "c-4"} {
		later = append(later, e.publish("ONCRMDEALUPDATE", 5, ts, true))
	}
	other := e.publish("ONCRMDEALUPDATE", 6, "o-1", true)
	eventually(t, 10*time.Second, "deal 6 while deal 5 is held", func() bool { return len(e.platform.ok()) == 1 })
	// Let deal 5's later events gather behind its head.
	time.Sleep(200 * time.Millisecond)
	once.Do(func() { close(release) })
	eventually(t, 10*time.Second, "deal 5's deliveries", func() bool { return len(e.platform.ok()) == 3 })
	time.Sleep(200 * time.Millisecond) // nothing else may come
	got := e.platform.ok()
	if len(got) != 3 {
		t.Fatalf("deliveries = %d; want 3 (deal 6, deal 5's first, one for deal 5's other three)", len(got))
	}
	ids := map[string][]string{}
	for _, r := range got {
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				Coalesced  []string `json:"coalesced"`
				Enrichment struct {
					Result map[string]any `json:"result"`
				} `json:"enrichment"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatal(err)
		}
		ids[r.header.Get("webhook-id")] = ev.Data.Coalesced
		if ev.Data.Enrichment.Result["ID"] == nil {
			t.Errorf("delivery %s without its enrichment", ev.ID)
		}
	}
	want := map[string][]string{
		other + "/" + routeDealSync:    nil,
		first + "/" + routeDealSync:    nil,
		later[2] + "/" + routeDealSync: later,
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("deliveries by webhook-id → data.coalesced (-want +got):\n%s", diff)
	}
	for _, id := range later {
		n := 0
		for _, x := range e.rec.forEvent(id) {
			if x.Operation == "deliver" && x.Outcome == hookgate.OutcomeOK {
				n++
			}
		}
		if n != 1 {
			t.Errorf("event %s: %d delivery rows; want 1", id, n)
		}
	}
	if n := e.sim.Requests("crm.deal.get") + e.sim.Nested("crm.deal.get"); n != 3 {
		t.Errorf("crm.deal.get calls = %d; want 3", n)
	}
}

// TestCallBatchFalse: a route that says call.batch: false calls alone even
// when its portal has a batcher; the same route without it is batched.
func TestCallBatchFalse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		batch     bool
		wantBatch bool
	}{
		{"batch: false", false, false},
		{"default", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if !tc.batch {
				e.routes[0].Call.Batch = &tc.batch
			}
			e.batchers = map[string]*outbound.Batcher{"main": outbound.NewBatcher(e.portal, 300*time.Millisecond, 0)}
			e.start()
			for deal := 1; deal <= 6; deal++ {
				e.publish("ONCRMDEALUPDATE", deal, "b-"+string(rune('a'+deal)), true)
			}
			eventually(t, 10*time.Second, "6 deliveries", func() bool { return len(e.platform.ok()) == 6 })
			batches, alone := e.sim.Requests("batch"), e.sim.Requests("crm.deal.get")
			if got := batches > 0; got != tc.wantBatch || batches+alone == 0 {
				t.Errorf("batch requests %d, calls alone %d; want batched = %v", batches, alone, tc.wantBatch)
			}
			if !tc.wantBatch && alone != 6 {
				t.Errorf("calls alone = %d; want 6", alone)
			}
		})
	}
}
