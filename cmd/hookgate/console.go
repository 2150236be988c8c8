package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/console"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/routes"
)

// newConsole builds the web console of serve (issue 19) over the admin
// API, the history serve writes, the job queue, the routes and the bus.
func (s *server) newConsole(api *admin.API, providers []string, checks map[string]gateway.Check) (*console.Console, error) {
	cfg := s.cfg
	var hist analytics.Browser
	if conn := s.hist.Conn(); conn != nil {
		hist = analytics.NewClickHouse(conn, cfg.History.ClickHouse.Database)
	} else {
		hist = analytics.NewFiles(filepath.Join(cfg.DataDir, "history"))
	}
	streamFor := 5 * time.Minute
	if wt := cfg.Server.WriteTimeout.D(); wt > 0 {
		streamFor = max(wt-time.Second, wt/2)
	}
	js, stream := s.bus.JetStream(), cfg.Bus.Stream
	return console.New(console.Config{
		Token:     cfg.Admin.Token,
		Secrets:   s.secrets,
		Sources:   api,
		Providers: providers,
		BasePath:  cfg.Server.BasePath,
		History:   hist,
		Dead:      countedReplays{s.queue, s.metrics.JobReplayed},
		Routes:    s.engine,
		RouteLag: func(ctx context.Context) (console.Lag, error) {
			return routeLag(ctx, js, stream, s.queue)
		},
		Checks:  checks,
		Metrics: s.metrics.Registry(),
		Feed: func(fn func([]byte)) (func(), error) {
			sub, err := s.bus.Conn().Subscribe(events.InboundSubjects, func(m *nats.Msg) { fn(m.Data) })
			if err != nil {
				return nil, err
			}
			return func() { sub.Unsubscribe() }, nil
		},
		SessionTTL: cfg.Admin.ConsoleSession.D(),
		StreamFor:  streamFor,
		Logger:     s.log,
	})
}

// Bounds of routeLag's read of the job queue: a page never waits long for
// a deep queue; what was not read is reported as partial.
const (
	lagMaxJobs   = 5000
	lagMaxPeriod = 250 * time.Millisecond
)

// routeLag is the console's view of how far the routes are behind: the
// events the routes consumer has not yet acknowledged, and the jobs of
// the job queue by route: those stored and not yet admitted to their
// key's lane (read oldest first), then those held in lanes (running,
// waiting for a retry, or behind their key's head); at most lagMaxJobs
// of each within lagMaxPeriod.
func routeLag(ctx context.Context, js jetstream.JetStream, eventStream string, q *jobs.Queue) (console.Lag, error) {
	lag, err := storedLag(ctx, js, eventStream, q.Config().Stream)
	if err != nil || lag.Partial {
		return lag, err
	}
	hctx, cancel := context.WithTimeout(ctx, lagMaxPeriod)
	defer cancel()
	read := 0
	err = q.Held(hctx, func(j *jobs.Job, queued time.Time) bool {
		if read >= lagMaxJobs {
			lag.Partial = true
			return false
		}
		read++
		var p struct {
			Route string `json:"route"`
		}
		if j.Kind != routes.JobKind || json.Unmarshal(j.Payload, &p) != nil || p.Route == "" {
			return true // not a route job
		}
		rj := lag.Jobs[p.Route]
		rj.Waiting++
		if rj.Oldest.IsZero() || (!queued.IsZero() && queued.Before(rj.Oldest)) {
			rj.Oldest = queued
		}
		lag.Jobs[p.Route] = rj
		return true
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		lag.Partial, err = true, nil
	}
	return lag, err
}

// storedLag is routeLag's part of the inbound stream and of the jobs
// stream.
func storedLag(ctx context.Context, js jetstream.JetStream, eventStream, jobStream string) (console.Lag, error) {
	lag := console.Lag{Jobs: map[string]console.RouteJobs{}}
	cons, err := js.Consumer(ctx, eventStream, routes.DefaultConsumer)
	switch {
	case err == nil:
		info, err := cons.Info(ctx)
		if err != nil {
			return lag, err
		}
		lag.Events = info.NumPending + uint64(info.NumAckPending)
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return lag, err
	}
	st, err := js.Stream(ctx, jobStream)
	if err != nil {
		return lag, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return lag, err
	}
	if info.State.Msgs == 0 {
		return lag, nil
	}
	deadline := time.Now().Add(lagMaxPeriod)
	seq, read := info.State.FirstSeq, 0
	for {
		if read >= lagMaxJobs || time.Now().After(deadline) {
			lag.Partial = uint64(read) < info.State.Msgs
			return lag, nil
		}
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(jobs.Subjects))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return lag, nil
		}
		if err != nil {
			return lag, err
		}
		read++
		seq = m.Sequence + 1
		var j struct {
			Payload struct {
				Route string `json:"route"`
			} `json:"payload"`
		}
		if json.Unmarshal(m.Data, &j) != nil || j.Payload.Route == "" {
			continue // not a route job
		}
		rj := lag.Jobs[j.Payload.Route]
		rj.Waiting++
		if rj.Oldest.IsZero() || m.Time.Before(rj.Oldest) {
			rj.Oldest = m.Time
		}
		lag.Jobs[j.Payload.Route] = rj
	}
}
