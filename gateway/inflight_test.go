package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
)

// TestInflightBudget: large bodies share a byte budget; one that finds no
// room within the wait answers 503 (unavailable), and a trim follows a
// burst once the budget has been idle for trimAfter.
func TestInflightBudget(t *testing.T) {
	var trims atomic.Int32
	f := newInflight(3<<20, 50*time.Millisecond, func() { trims.Add(1) })
	ctx := context.Background()
	r1, err := f.reserve(ctx, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reserve(ctx, 2<<20); hookgate.ErrorCode(err) != hookgate.EUnavailable {
		t.Fatalf("reserve over the budget = %v; want unavailable", err)
	}
	r2, err := f.reserve(ctx, 1<<20) // fits beside the first
	if err != nil {
		t.Fatalf("reserve within the budget = %v", err)
	}
	big, err := f.reserve(ctx, 10<<20) // over the whole budget: waits for all of it
	if err == nil {
		t.Fatal("reserve of a body over the whole budget while others hold it = nil; want it to wait, then 503")
	}
	r1()
	r2()
	if big, err = f.reserve(ctx, 10<<20); err != nil {
		t.Fatalf("reserve of a body over the whole budget alone = %v; want it to go alone", err)
	}
	big()
	if f.busy.Load() != 0 {
		t.Errorf("busy = %d after every release", f.busy.Load())
	}
	// a burst of 32 MiB arms the trim; it fires once after trimAfter
	for range 32 {
		r, err := f.reserve(ctx, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	deadline := time.Now().Add(trimAfter + 5*time.Second)
	for trims.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := trims.Load(); got != 1 {
		t.Errorf("trims after a burst = %d; want 1", got)
	}
}
