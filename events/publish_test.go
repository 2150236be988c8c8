package events_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// TestPublishConcurrent publishes from many goroutines under each sync
// policy, every id twice, and checks that every acknowledged message is in
// the stream once and that exactly one of each pair was reported new.
func TestPublishConcurrent(t *testing.T) {
	for _, policy := range []string{"always", "group"} {
		t.Run(policy, func(t *testing.T) {
			cfg := config.Default().Bus
			cfg.Sync = policy
			cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			bus, err := events.Open(context.Background(), cfg, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			const workers, ids = 64, 1500
			type result struct {
				id        string
				duplicate bool
				err       error
			}
			results := make(chan result, 3*ids)
			work := make(chan string)
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range work {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						dup, err := bus.Publish(ctx, "hookgate.in.b24.ONCRMDEALUPDATE", id, []byte(`{"id":"`+id+`"}`))
						cancel()
						results <- result{id, dup, err}
					}
				}()
			}
			// each id twice: once in the first pass, once in the second,
			// and some twice back to back (likely in one batch)
			for pass := range 2 {
				for i := range ids {
					id := "e" + strconv.Itoa(i)
					work <- id
					if pass == 0 && i%100 == 0 {
						work <- id
					}
				}
			}
			close(work)
			wg.Wait()
			close(results)
			fresh := map[string]int{}
			acked := 0
			for r := range results {
				if r.err != nil {
					t.Fatalf("Publish(%s) = %v", r.id, r.err)
				}
				acked++
				if !r.duplicate {
					fresh[r.id]++
				}
			}
			for i := range ids {
				id := "e" + strconv.Itoa(i)
				if fresh[id] != 1 {
					t.Errorf("Publish(%s) reported new %d times; want 1", id, fresh[id])
				}
			}
			stored := storedIDs(t, bus)
			if len(stored) != ids {
				t.Errorf("stream holds %d distinct ids; want %d", len(stored), ids)
			}
			for id, n := range stored {
				if n != 1 {
					t.Errorf("id %s stored %d times; want 1", id, n)
				}
			}
			t.Logf("sync %s: %d publishes acknowledged, %d stored", policy, acked, len(stored))
		})
	}
}

// storedIDs reads the inbound stream and counts messages per Nats-Msg-Id.
func storedIDs(t *testing.T, bus *events.Bus) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bus.JetStream().Stream(ctx, bus.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return ids
}
