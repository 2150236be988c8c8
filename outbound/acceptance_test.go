package outbound

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// fire makes n calls at once through a client whose bucket matches the
// simulator's (burst, perSecond) and checks issue 5's acceptance: all
// succeed, the simulator answers no QUERY_LIMIT_EXCEEDED, the first burst
// goes at once and the rest at about perSecond.
func fire(t *testing.T, n, burst int, perSecond float64) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(burst, perSecond))
	sim.SeedDeals(1)
	c := setup(t, sim, config.Portal{Rate: &config.Rate{PerSecond: perSecond, Burst: burst}}, WithRetries(0))

	start := time.Now()
	done := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1})
			done[i] = time.Since(start)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if q := sim.Answers(bitrix24test.CodeQueryLimitExceeded); q != 0 {
		t.Errorf("simulator answered %d QUERY_LIMIT_EXCEEDED; want 0", q)
	}
	if got := sim.Requests("crm.deal.get"); got != n {
		t.Errorf("simulator saw %d requests; want %d", got, n)
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	inFirst := sort.Search(n, func(i int) bool { return done[i] > time.Second })
	if lo, hi := burst-3, burst+int(perSecond)+1; inFirst < lo || inFirst > hi {
		t.Errorf("%d calls done in the first second; want the burst, %d..%d", inFirst, lo, hi)
	}
	want := time.Duration(float64(n-burst) / perSecond * float64(time.Second))
	if elapsed < want-time.Second || elapsed > want+3*time.Second {
		t.Errorf("%d calls took %v; want about %v", n, elapsed, want)
	}
	t.Logf("%d calls, bucket %d / %.0f per s: %d in the first second, all in %v (rate after the burst %.2f/s)",
		n, burst, perSecond, inFirst, elapsed.Round(time.Millisecond), float64(n-burst)/(elapsed-done[burst-1]).Seconds())
}

// TestAcceptanceBucketScaled is the 300-call acceptance with the rate
// scaled to 20/s (burst 50) so it runs in ~13 s.
func TestAcceptanceBucketScaled(t *testing.T) { fire(t, 300, 50, 20) }

// TestAcceptanceBucketDefaultShort runs the default bucket (50, 2/s) with
// 60 calls: the burst and five seconds of the steady rate.
func TestAcceptanceBucketDefaultShort(t *testing.T) { fire(t, 60, 50, 2) }

// TestAcceptanceBucketDefault is issue 5's acceptance as written: 300
// calls at the default bucket, ~125 s. Skipped with -short.
func TestAcceptanceBucketDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~125 s; run without -short")
	}
	fire(t, 300, 50, 2)
}
