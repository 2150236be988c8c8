package outbound

import (
	"context"
	"testing"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// TestQueryLimitEmptiesBucket: a client whose bucket is fuller than the
// portal's (the portal's holds 5 here, as after a restart of the process
// the client starts full while the portal is not) gets one
// QUERY_LIMIT_EXCEEDED, empties its own bucket and paces the rest at the
// drain rate: no second one. Without that, the calls after the first
// retry leave in a burst again and run into the portal's limit again (2
// answers in this test).
func TestQueryLimitEmptiesBucket(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(5, 2))
	sim.SeedDeals(1)
	c := setup(t, sim, config.Portal{Rate: &config.Rate{PerSecond: 2, Burst: 50}}, WithRateGuard(0))
	for i := range 10 {
		if _, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := sim.Answers(CodeQueryLimitExceeded); n != 1 {
		t.Errorf("QUERY_LIMIT_EXCEEDED answers = %d; want 1", n)
	}
}
