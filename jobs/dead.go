package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Dead returns the dead-lettered jobs, oldest first.
func (q *Queue) Dead(ctx context.Context) ([]DeadJob, error) {
	w, err := q.dead.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("jobs: list dead: %w", err)
	}
	defer w.Stop()
	out := []DeadJob{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("jobs: list dead: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				slices.SortFunc(out, func(a, b DeadJob) int { return a.DeadAt.Compare(b.DeadAt) })
				return out, nil
			}
			var d DeadJob
			if err := json.Unmarshal(e.Value(), &d); err != nil {
				q.log.Warn("unreadable dead job", "key", e.Key(), "err", err)
				continue
			}
			out = append(out, d)
		}
	}
}

// DeadJob returns one dead-lettered job, or ErrNotFound.
func (q *Queue) DeadJob(ctx context.Context, id string) (*DeadJob, error) {
	d, _, err := q.getDead(ctx, id)
	return d, err
}

// getDead reads a dead entry. Route job ids hold a "/" (event id/route),
// which admin URLs carry escaped (%2F): an id not found as given is tried
// path-unescaped.
func (q *Queue) getDead(ctx context.Context, id string) (*DeadJob, uint64, error) {
	e, err := q.dead.Get(ctx, kvKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) && strings.Contains(id, "%") {
		if u, uerr := url.PathUnescape(id); uerr == nil && u != id {
			return q.getDead(ctx, u)
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: read dead job %q: %w", id, err)
	}
	var d DeadJob
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, 0, fmt.Errorf("jobs: read dead job %q: %w", id, err)
	}
	return &d, e.Revision(), nil
}

// Replay re-enqueues a dead-lettered job with its attempts reset and
// removes it from the dead letters. The job keeps its id (a delivery keeps
// its webhook-id); its Nats-Msg-Id gets a suffix naming the dead entry's
// revision, so de-duplication does not swallow it while a repeated Replay
// of the same dead entry (after a failure half-way) still stores it once.
// A replayed job runs after the jobs already waiting on its partition.
func (q *Queue) Replay(ctx context.Context, id string) error {
	d, rev, err := q.getDead(ctx, id)
	if err != nil {
		return err
	}
	key := kvKey(d.Job.ID)
	if err := q.state.Purge(ctx, key); err != nil {
		return fmt.Errorf("jobs: replay %q: reset state: %w", id, err)
	}
	id = d.Job.ID
	msgID := d.Job.ID + "#replay-" + strconv.FormatUint(rev, 10)
	if _, err := q.publish(ctx, d.Job, msgID); err != nil {
		return fmt.Errorf("jobs: replay: %w", err)
	}
	if err := q.dead.Purge(ctx, key, jetstream.LastRevision(rev)); err != nil && !isWrongLastSequence(err) {
		return fmt.Errorf("jobs: replay %q: remove dead entry: %w", id, err)
	}
	q.log.Info("dead job replayed", "job", id)
	return nil
}

// isWrongLastSequence reports a revision conflict: someone else replayed
// or re-dead-lettered the entry meanwhile.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}
