package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/console"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
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
		RouteLag: func(ctx context.Context) (uint64, error) {
			cons, err := js.Consumer(ctx, stream, routes.DefaultConsumer)
			if err != nil {
				return 0, err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.NumPending + uint64(info.NumAckPending), nil
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
