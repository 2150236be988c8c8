package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Held calls f for every job held in a lane, lane by lane: the head
// (running or waiting for its next attempt), then the jobs parked behind
// it, with when each was admitted to its lane. It stops when f returns
// false or ctx ends (returning ctx's error). Jobs not yet admitted are
// still in the jobs stream (Config.Stream); a job moving meanwhile may be
// seen twice or not at all: it is a view for operators, not an account.
func (q *Queue) Held(ctx context.Context, f func(j *Job, queued time.Time) bool) error {
	keys, err := q.lanes.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("jobs: list lanes: %w", err)
	}
	for key := range keys.Keys() {
		l, _, ok, err := q.loadLane(ctx, key)
		if err != nil {
			return fmt.Errorf("jobs: read lane: %w", err)
		}
		if !ok {
			continue // done meanwhile
		}
		if !f(&l.Head, l.Queued) {
			return nil
		}
		for _, id := range l.Followers {
			j, at, err := q.parkedEntry(ctx, id)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // it became a head, or ran, meanwhile
			}
			if err != nil {
				return fmt.Errorf("jobs: read parked job: %w", err)
			}
			if !f(j, at) {
				return nil
			}
		}
	}
	return ctx.Err()
}
