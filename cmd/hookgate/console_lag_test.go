package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/routes"
)

// TestRouteLag: the routes page's lag counts the stored jobs by route,
// oldest first, from the real job queue on an embedded bus.
func TestRouteLag(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := config.Default().Bus
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	bus, err := events.Open(ctx, cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	js := bus.JetStream()
	q, err := jobs.New(ctx, js, jobs.Config{Partitions: 4, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lag, err := routeLag(ctx, js, cfg.Stream, q)
	if err != nil || len(lag.Jobs) != 0 || lag.Events != 0 || lag.Partial {
		t.Fatalf("routeLag on an empty queue = %+v, %v", lag, err)
	}
	before := time.Now().Add(-time.Second)
	for i, route := range []string{"deal-sync", "deal-sync", "lead-sync", "deal-sync"} {
		j := jobs.Job{ID: fmt.Sprintf("ev%d/%s", i, route), Kind: routes.JobKind, Key: strconv.Itoa(i),
			Payload: []byte(fmt.Sprintf(`{"route":%q,"event":{}}`, route))}
		if err := q.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Enqueue(ctx, jobs.Job{ID: "other", Kind: "other", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	lag, err = routeLag(ctx, js, cfg.Stream, q)
	if err != nil {
		t.Fatal(err)
	}
	if d, l := lag.Jobs["deal-sync"], lag.Jobs["lead-sync"]; d.Waiting != 3 || l.Waiting != 1 || len(lag.Jobs) != 2 || lag.Partial ||
		d.Oldest.Before(before) || d.Oldest.After(time.Now()) {
		t.Errorf("routeLag = %+v; want deal-sync 3, lead-sync 1, stored just now", lag)
	}

	// Admitted to their keys' lanes and running (the handler holds them),
	// the jobs have left the jobs stream and still count.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Run(rctx, func(hctx context.Context, _ *jobs.Job, _ int) error { <-hctx.Done(); return hctx.Err() })
	}()
	defer func() { stop(); <-done }()
	waitFor(t, "the jobs admitted to their lanes", 10*time.Second, func() bool {
		st, err := js.Stream(ctx, q.Config().Stream)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
	lag, err = routeLag(ctx, js, cfg.Stream, q)
	if err != nil {
		t.Fatal(err)
	}
	if d, l := lag.Jobs["deal-sync"], lag.Jobs["lead-sync"]; d.Waiting != 3 || l.Waiting != 1 || len(lag.Jobs) != 2 || lag.Partial ||
		d.Oldest.Before(before) || d.Oldest.After(time.Now()) {
		t.Errorf("routeLag of admitted jobs = %+v; want deal-sync 3, lead-sync 1, admitted just now", lag)
	}
}
