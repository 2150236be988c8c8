package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/console"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/reconcile"
	"github.com/hookgate/hookgate/routes"
	"github.com/hookgate/hookgate/telemetry"
	"github.com/hookgate/hookgate/vault"
)

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs, path := flags("serve", stderr)
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	// the whole config, provider options and route templates included, is
	// checked before anything is opened or created
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log, redact := newLogger(cfg.Log, stderr)
	stopTracing, err := startTracing(ctx, cfg.Telemetry, log, redact)
	if err != nil {
		return err
	}
	defer stopTracing()
	s, err := newServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(ctx)
}

// startTracing starts OpenTelemetry tracing when an OTLP endpoint is set
// (telemetry section, OTEL_* variables) and logs what it chose. The
// returned stop flushes the spans still queued, within 5 s.
func startTracing(ctx context.Context, cfg config.Telemetry, log *slog.Logger, redact redactPtr) (stop func(), err error) {
	set, err := telemetry.Resolve(cfg, os.Getenv)
	if err != nil {
		return nil, err
	}
	if !set.On {
		log.Debug("tracing off", "why", set.Why)
		return func() {}, nil
	}
	host, _ := os.Hostname()
	redactFn := func(s string) string {
		if f := redact.Load(); f != nil {
			return (*f)(s)
		}
		return s
	}
	shutdown, err := telemetry.Setup(ctx, set, fmt.Sprintf("%s/%d", host, os.Getpid()), log, redactFn)
	if err != nil {
		return nil, err
	}
	ratio := "OTEL_TRACES_SAMPLER or 1"
	if set.HasRatio {
		ratio = strconv.FormatFloat(set.Ratio, 'g', -1, 64)
	}
	log.Info("tracing on", "endpoint_from", set.EndpointFrom, "endpoint", set.Endpoint, "protocol", set.Protocol,
		"sample_ratio", ratio, "service_name", set.ServiceName)
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("tracing: flush at shutdown", "err", redactFn(err.Error()))
		}
	}, nil
}

// server is everything serve runs: newServer opens it in order, Run runs
// every goroutine in one errgroup, Close releases it in reverse.
type server struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	secrets *vault.Store
	hist    *history.Writer
	bus     *events.Bus
	queue   *jobs.Queue
	engine  *routes.Engine
	sources *events.SourceStore
	gw      *gateway.Gateway
	console *console.Console // nil unless admin.token is set and admin.console is on
	ln      net.Listener
	pprof   *http.Server // nil unless HOOKGATE_PPROF is set
	// reconcilers find Bitrix24 changes whose events never came (wiring.go)
	reconcilers []*reconcile.Reconciler
}

// newServer opens what serve needs, in order: the secret store (every
// reference read once), data_dir, history, the bus, the job queue and
// routes, the gateway and its admin API, the listener. Nothing is created
// on disk before the secrets are known to exist. On error what was opened
// is closed again.
func newServer(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *server, err error) {
	m := metrics.New()
	s := &server{cfg: cfg, log: log, metrics: m}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.secrets, err = openSecrets(ctx, cfg, log, redactOf(log), vault.WithObserver(m.Secret)); err != nil {
		return nil, err
	}
	if err := checkSecrets(ctx, cfg, s.secrets, log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if s.hist, err = openHistory(ctx, cfg, s.secrets, log, history.WithObserver(m.HistoryRows), history.WithSpoolGauge(m.SpoolBytes)); err != nil {
		return nil, err
	}
	// every row also feeds the outbound metrics of deliveries
	rec := metricRecorder{next: s.hist, m: m}

	if s.bus, err = events.Open(ctx, cfg.Bus, cfg.DataDir, events.WithLogger(log)); err != nil {
		return nil, err
	}
	js := s.bus.JetStream()
	portals := map[string]*outbound.Bitrix24{}
	batchers := map[string]*outbound.Batcher{}
	for _, p := range cfg.Portals {
		ref := p.Secret
		c, err := outbound.NewBitrix24(p, func(ctx context.Context) (hookgate.Secret, error) {
			return s.secrets.Secret(ctx, ref)
		}, outbound.WithRecorder(rec), outbound.WithLogger(log), outbound.WithObserver(m), outbound.WithRetries(p.Retries))
		if err != nil {
			return nil, fmt.Errorf("portal %q: %w", p.ID, err)
		}
		portals[p.ID] = c
		id := p.ID
		batchers[p.ID] = outbound.NewBatcher(c, p.BatchWait.D(), p.BatchSize,
			outbound.WithBatchObserver(func(n int) { m.BatchSize(id, n) }))
		m.BreakerState(p.ID, "closed")
	}
	s.queue, err = jobs.New(ctx, js, jobsConfig(cfg), jobs.WithLogger(log),
		jobs.WithObserver(jobs.Observer{Pending: m.JobsPending, Dead: func(jobs.DeadJob) { m.JobDead() }}))
	if err != nil {
		return nil, err
	}
	if dead, err := s.queue.Dead(ctx); err == nil {
		m.SetJobsDead(len(dead))
	}
	disabled, err := routes.DisabledBucket(ctx, js, cfg.Bus.Replicas)
	if err != nil {
		return nil, err
	}
	syncState, syncMetrics, err := openSync(ctx, cfg, js, m, log) // wiring.go
	if err != nil {
		return nil, err
	}
	if s.reconcilers, err = newReconcilers(ctx, cfg, js, portals, s.bus.Publish, rec, syncMetrics, log); err != nil {
		return nil, err
	}
	s.engine, err = routes.New(cfg.Routes, routes.Deps{
		Queue: s.queue, Portals: portals, Batchers: batchers, Secrets: s.secrets, Disabled: disabled,
		Observe:  routes.Observer{Coalesced: m.Coalesced, Lag: m.RouteLag},
		Recorder: rec, Logger: log, Stream: cfg.Bus.Stream, Sync: syncState,
	})
	if err != nil {
		return nil, err
	}
	if s.sources, err = events.NewSourceStore(ctx, js, cfg.Bus.Replicas); err != nil {
		return nil, err
	}
	reg := registry()
	checks := map[string]gateway.Check{"bus": s.bus.Check, "history": historyReady(s.hist)}
	s.gw, err = gateway.New(cfg.Server, cfg.Sources, gateway.Deps{
		Registry:      reg,
		Secrets:       s.secrets,
		Bus:           s.bus,
		Recorder:      s.hist,
		Logger:        log,
		Observe:       m.Inbound,
		SecretMissing: m.SecretMissing,
		Panicked:      m.Panicked(),
		Trim:          debug.FreeOSMemory,
		Metrics:       m.Handler(),
		Checks:        checks,
		// Vault down does not take the gateway out of rotation: cached
		// secrets keep serving; /readyz shows it as degraded.
		Degraded: map[string]gateway.Check{"secrets": s.secrets.Check},
	})
	if err != nil {
		return nil, err
	}
	if cfg.Admin.Token != "" {
		api, err := admin.New(s.gw, reg, s.secrets, admin.Config{
			Token:   cfg.Admin.Token,
			Sources: s.sources,
			Dead:    countedReplays{s.queue, m.JobReplayed},
			Caller:  admin.Portals(portals),
			Routes:  s.engine,
		}, admin.WithLogger(log))
		if err != nil {
			return nil, err
		}
		api.Mount(s.gw.App())
		if cfg.Admin.Console {
			all := map[string]gateway.Check{"secrets": s.secrets.Check}
			maps.Copy(all, checks)
			if s.console, err = s.newConsole(api, reg.Names(), all); err != nil {
				return nil, err
			}
			s.console.Mount(s.gw.App())
		}
	}
	if rt, err := s.sources.List(ctx); err == nil && len(rt) > 0 {
		if err := s.gw.SetRuntimeSources(rt); err != nil {
			log.Warn("runtime sources", "err", s.secrets.Redact(err.Error()))
		}
	}
	if addr := os.Getenv("HOOKGATE_PPROF"); addr != "" {
		// opt-in profiling (docs/performance.md); keep it on loopback
		runtime.SetMutexProfileFraction(100)
		s.pprof = &http.Server{Addr: addr, Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
	}
	if s.ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Server.Listen, err)
	}
	return s, nil
}

// Run serves until ctx ends or a part fails, then shuts down gracefully.
// Every goroutine runs in its errgroup; the history writer and the job
// workers outlive ctx, as shutdown stops them in its own order.
func (s *server) Run(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	runtime := 0
	for _, src := range s.gw.Sources() {
		if src.Runtime {
			runtime++
		}
	}
	log.Info("hookgate serving", "version", hookgate.Version, "listen", s.ln.Addr().String(),
		"sources", len(cfg.Sources)+runtime, "runtime_sources", runtime, "routes", len(cfg.Routes), "portals", len(cfg.Portals),
		"bus_embedded", s.bus.Embedded(), "bus_listen", cfg.Bus.Listen, "admin", cfg.Admin.Token != "", "console", s.console != nil)
	histCtx, histStop := context.WithCancel(context.WithoutCancel(ctx))
	defer histStop()
	workCtx, workStop := context.WithCancel(context.WithoutCancel(ctx))
	defer workStop()
	st := stages{workStop: workStop, workDone: make(chan struct{}), histStop: histStop, histDone: make(chan struct{})}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(st.histDone)
		return s.hist.Run(histCtx)
	})
	g.Go(func() error {
		if err := s.gw.Serve(s.ln); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer close(st.workDone)
		if len(cfg.Routes) == 0 {
			return nil // nothing to route: no consumer, no workers
		}
		return s.engine.Run(workCtx, s.bus.JetStream())
	})
	g.Go(func() error {
		// A watch that stops (the bus restarted, the connection was cut) is
		// started again: it must never take the gateway down.
		return keepRunning(gctx, log, "runtime sources watch", func(ctx context.Context) error {
			return s.sources.Watch(ctx, func(src []config.Source) {
				if err := s.gw.SetRuntimeSources(src); err != nil {
					log.Warn("runtime sources", "err", s.secrets.Redact(err.Error()))
				}
			})
		})
	})
	g.Go(func() error {
		// the dead-letter gauge from the bus, the same on every instance
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if dead, err := s.queue.Dead(gctx); err == nil {
					s.metrics.SetJobsDead(len(dead))
				}
			}
		}
	})
	for _, r := range s.reconcilers {
		g.Go(func() error { return r.Run(gctx) })
	}
	if s.console != nil {
		g.Go(func() error { return s.console.Run(gctx) })
	}
	if s.pprof != nil {
		g.Go(func() error {
			log.Info("pprof listening", "addr", s.pprof.Addr)
			// profiling that cannot listen is not a reason to stop serving
			if err := s.pprof.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("pprof listener", "addr", s.pprof.Addr, "err", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		return s.shutdown(st)
	})
	return g.Wait()
}

// stages are the parts of Run that shutdown stops one at a time: the job
// workers (workStop, then workDone is closed when they have returned) and
// the history writer (histStop, histDone).
type stages struct {
	workStop, histStop context.CancelFunc
	workDone, histDone chan struct{}
}

// shutdown runs the graceful stop in order: readiness off, stop accepting,
// finish in-flight requests, hand back jobs, drain the bus, flush history.
// All of it within server.shutdown_timeout.
func (s *server) shutdown(st stages) error {
	deadline := s.cfg.Server.ShutdownTimeout.D()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s.log.Info("shutting down", "timeout", deadline)
	s.gw.SetDraining() // 1. /readyz answers 503
	if d := s.cfg.Server.DrainDelay.D(); d > 0 {
		// give load balancers time to see it before the listener closes
		time.Sleep(min(d, remaining(ctx)))
	}
	var errs []error
	// 2 and 3: stop accepting connections, let in-flight requests finish
	if err := s.gw.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	// 4. workers finish their job or hand it back (nak)
	st.workStop()
	select {
	case <-st.workDone:
	case <-ctx.Done():
		errs = append(errs, errors.New("job workers did not stop within shutdown_timeout"))
	}
	// 5. the bus drains
	if err := s.bus.Drain(remaining(ctx)); err != nil {
		errs = append(errs, err)
	}
	// 6. history flushes (what cannot reach ClickHouse stays in the spool)
	st.histStop()
	select {
	case <-st.histDone:
	case <-ctx.Done():
		errs = append(errs, errors.New("history flush did not finish within shutdown_timeout; rows stay in the spool"))
	}
	// 7. the profiling listener closes last, so a slow shutdown can be profiled
	if s.pprof != nil {
		s.pprof.Close()
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("shutdown incomplete", "err", err)
		return err
	}
	s.log.Info("shut down cleanly")
	return nil
}

// Close releases what newServer opened, in reverse order: the listener
// (when Run never served it), the bus, history (its files and spool closed
// after its last flush), the secret store. Call it after Run has returned.
func (s *server) Close() {
	if s.ln != nil {
		s.ln.Close() // already closed when Run served it
	}
	if s.pprof != nil {
		s.pprof.Close()
	}
	if s.bus != nil {
		s.bus.Close()
	}
	if s.hist != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.hist.Close(ctx); err != nil {
			s.log.Warn("history close", "err", err)
		}
	}
	if s.secrets != nil {
		s.secrets.Close()
	}
}

func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), 100*time.Millisecond)
	}
	return 5 * time.Second
}

// historyReady is the history readiness check. ClickHouse being down is
// not a reason to take the gateway out of rotation — rows wait in the spool
// — but a full spool (rows being dropped) or unwritable files are.
func historyReady(h *history.Writer) gateway.Check {
	return func(context.Context) error {
		err := h.Healthy()
		if errors.Is(err, history.ErrClickHouseDown) {
			return nil
		}
		return err
	}
}

// metricRecorder passes rows to history and counts deliveries (outbound
// rows of provider "http") in the outbound metrics; Bitrix24 calls are
// counted by the client's own observer.
type metricRecorder struct {
	next hookgate.Recorder
	m    *metrics.Metrics
}

func (r metricRecorder) Record(x hookgate.Exchange) {
	if x.Direction == hookgate.Outbound && x.Provider == "http" {
		r.m.Outbound(x.Source, x.Operation, x.Outcome, time.Duration(float64(x.DurationMS)*float64(time.Millisecond)))
	}
	r.next.Record(x)
}

// pprofMux serves net/http/pprof's handlers.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// jobsConfig is the durable job queue's config: retry plus the bus's
// replica count.
func jobsConfig(cfg *config.Config) jobs.Config {
	jc := jobs.FromConfig(cfg.Retry)
	jc.Replicas = cfg.Bus.Replicas
	return jc
}

// countedReplays is the admin API's view of the dead letters: the queue's,
// counting each replay in the metrics.
type countedReplays struct {
	*jobs.Queue
	replayed func()
}

func (q countedReplays) Replay(ctx context.Context, id string) error {
	err := q.Queue.Replay(ctx, id)
	if err == nil {
		q.replayed()
	}
	return err
}

// openHistory opens the history writer: ClickHouse when configured (the
// schema is migrated before the first insert), NDJSON files otherwise.
func openHistory(ctx context.Context, cfg *config.Config, secrets *vault.Store, log *slog.Logger, opts ...history.Option) (*history.Writer, error) {
	password, err := historyPassword(ctx, cfg, secrets)
	if err != nil {
		return nil, err
	}
	opts = append([]history.Option{history.WithLogger(log), history.WithRedact(secrets.Redact)}, opts...)
	return history.New(ctx, cfg.History, cfg.DataDir, password, opts...)
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
			msg := hookgate.ErrorMessage(err)
			if !strings.Contains(msg, ref) {
				msg = fmt.Sprintf("secret %q: %s", ref, msg)
			}
			problems = append(problems, config.Problem{Path: path, Message: msg})
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

// keepRunning runs fn until ctx ends, starting it again after an error or
// a panic with a growing pause (250 ms up to 10 s, reset after a minute of
// running): a background loop that fails is logged, never fatal.
func keepRunning(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	const first, most = 250 * time.Millisecond, 10 * time.Second
	pause := first
	for {
		start := time.Now()
		err := runGuarded(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			pause = first
		}
		log.Warn(what+" stopped; starting it again", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, most)
	}
}

// runGuarded runs fn and turns a panic into an error.
func runGuarded(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if err = fn(ctx); err == nil {
		err = errors.New("returned")
	}
	return err
}
