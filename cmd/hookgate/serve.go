package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/vault"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs, path := flags("serve", stderr)
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log, redact := newLogger(cfg.Log, stderr)
	return serve(ctx, cfg, log, redact)
}

// app is everything serve runs, built in order and torn down in reverse.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	secrets *vault.Store
	bus     *events.Bus
	gw      *gateway.Gateway
	hist    *history.Writer
	// histStop ends the history writer's Run after everything that records
	// rows has stopped; histDone is closed when Run has returned.
	histStop context.CancelFunc
	histDone chan struct{}
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, redact redactPtr) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	a := &app{cfg: cfg, log: log}
	secrets, err := vault.New(ctx, cfg.Secrets, vault.WithLogger(log))
	if err != nil {
		return err
	}
	defer secrets.Close()
	a.secrets = secrets
	rf := secrets.Redact
	redact.Store(&rf)
	if err := checkSecrets(ctx, cfg, secrets, log); err != nil {
		return err
	}

	hist, err := openHistory(ctx, cfg, secrets, log)
	if err != nil {
		return err
	}
	a.hist = hist
	histCtx, histStop := context.WithCancel(context.WithoutCancel(ctx))
	a.histStop, a.histDone = histStop, make(chan struct{})
	go func() {
		defer close(a.histDone)
		hist.Run(histCtx)
	}()
	defer func() {
		histStop()
		<-a.histDone
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hist.Close(cctx); err != nil {
			log.Warn("history close", "err", err)
		}
	}()

	bus, err := events.Open(ctx, cfg.Bus, cfg.DataDir, events.WithLogger(log))
	if err != nil {
		return err
	}
	defer bus.Close()
	a.bus = bus

	gw, err := gateway.New(cfg.Server, cfg.Sources, gateway.Deps{
		Registry: registry(),
		Secrets:  secrets,
		Bus:      bus,
		Recorder: hist,
		Logger:   log,
		Checks: map[string]gateway.Check{
			"bus":     bus.Check,
			"secrets": secrets.Check,
			"history": func(context.Context) error { return hist.Healthy() },
		},
		HistoryBodyBytes: cfg.History.MaxBodyBytes,
	})
	if err != nil {
		return err
	}
	a.gw = gw
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Server.Listen, err)
	}
	log.Info("hookgate serving", "version", hookgate.Version, "listen", ln.Addr().String(),
		"sources", len(cfg.Sources), "bus_embedded", bus.Embedded(), "bus_listen", cfg.Bus.Listen)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := gw.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return a.shutdown()
	})
	return g.Wait()
}

// shutdown runs the graceful stop in order: readiness off, stop accepting,
// finish in-flight requests, hand back jobs, drain the bus, flush history.
func (a *app) shutdown() error {
	deadline := a.cfg.Server.ShutdownTimeout.D()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	a.log.Info("shutting down", "timeout", deadline)
	a.gw.SetDraining()
	var errs []error
	if err := a.gw.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := a.bus.Drain(remaining(ctx)); err != nil {
		errs = append(errs, err)
	}
	a.histStop()
	select {
	case <-a.histDone:
	case <-ctx.Done():
		errs = append(errs, errors.New("history flush did not finish within shutdown_timeout; rows stay in the spool"))
	}
	return errors.Join(errs...)
}

func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), 100*time.Millisecond)
	}
	return 5 * time.Second
}

// openHistory opens the history writer: ClickHouse when configured (the
// schema is migrated before the first insert), NDJSON files otherwise.
func openHistory(ctx context.Context, cfg *config.Config, secrets *vault.Store, log *slog.Logger) (*history.Writer, error) {
	var password string
	if ref := cfg.History.ClickHouse.Password; ref != "" {
		s, err := secrets.Secret(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("history.clickhouse.password: %w", err)
		}
		password = s.Reveal()
	}
	return history.New(ctx, cfg.History, cfg.DataDir, password,
		history.WithLogger(log), history.WithRedact(secrets.Redact))
}

// checkSecrets reads every secret reference of the config once at start:
// missing secrets are reported all at once; an unreachable store only warns
// (cached-cold sources answer 503 until it is back).
func checkSecrets(ctx context.Context, cfg *config.Config, s *vault.Store, log *slog.Logger) error {
	var problems config.Problems
	check := func(path, ref string) {
		if ref == "" {
			return
		}
		_, err := s.Secret(ctx, ref)
		switch hookgate.ErrorCode(err) {
		case "":
		case hookgate.EUnavailable:
			log.Warn("secret store unavailable at start; sources using it answer 503 until it is back", "ref", ref)
		default:
			problems = append(problems, config.Problem{Path: path, Message: fmt.Sprintf("secret %q: %s", ref, hookgate.ErrorMessage(err))})
		}
	}
	for i, src := range cfg.Sources {
		check(fmt.Sprintf("sources[%d].secret", i), src.Secret)
	}
	for i, p := range cfg.Portals {
		check(fmt.Sprintf("portals[%d].secret", i), p.Secret)
	}
	for i, r := range cfg.Routes {
		if r.Deliver != nil {
			check(fmt.Sprintf("routes[%d].deliver.secret", i), r.Deliver.Secret)
		}
	}
	check("admin.token", cfg.Admin.Token)
	check("history.clickhouse.password", cfg.History.ClickHouse.Password)
	if len(problems) > 0 {
		return problems
	}
	return nil
}
