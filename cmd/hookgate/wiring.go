package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/reconcile"
	"github.com/hookgate/hookgate/routes"
	"github.com/hookgate/hookgate/vault"
)

// openCLIHistory opens a history writer for a command that makes outbound
// exchanges itself (`call` on its own), as serve opens its own, and returns
// it with the function that flushes and closes it. beside says a gateway
// runs on this config: its data_dir/history (NDJSON files, ClickHouse
// spool) is then serve's, so the command writes under
// data_dir/call/<pid>/history instead, and removes it when nothing is left
// there.
func openCLIHistory(ctx context.Context, cfg *config.Config, secrets *vault.Store, log *slog.Logger, beside bool) (hookgate.Recorder, func(), error) {
	c := *cfg
	if beside {
		c.DataDir = filepath.Join(cfg.DataDir, "call", strconv.Itoa(os.Getpid()))
	}
	hist, err := openHistory(ctx, &c, secrets, log)
	if err != nil {
		return nil, nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		hist.Run(runCtx)
	}()
	return hist, func() {
		stop()
		<-done
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hist.Close(cctx); err != nil {
			log.Warn("history close: rows left in the spool", "dir", filepath.Join(c.DataDir, "history"), "err", err)
			return
		}
		if beside && len(cfg.History.ClickHouse.Addr) > 0 {
			removeEmptyDirs(c.DataDir)
		}
	}, nil
}

// removeEmptyDirs removes dir when it holds no file, at any depth.
func removeEmptyDirs(dir string) {
	hasFile := false
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			hasFile = true
			return filepath.SkipAll
		}
		return nil
	})
	if !hasFile {
		os.RemoveAll(dir)
	}
}

// openSync opens the two-way sync state of the routes (docs/sync.md): the
// echo fingerprints (unless sync.echo is off) and the seen records, with
// their metrics. A config with no route that writes CRM entities and no
// reconcile entry has none (nil).
func openSync(ctx context.Context, cfg *config.Config, js jetstream.JetStream, m *metrics.Metrics, log *slog.Logger) (*routes.Sync, *metrics.Sync, error) {
	sm := m.NewSync()
	if !routes.Writes(cfg.Routes) && len(cfg.Reconcile) == 0 {
		return nil, sm, nil
	}
	users := map[string]string{}
	for _, p := range cfg.Portals {
		users[p.ID] = strconv.Itoa(p.UserID)
	}
	var reconciled []string
	for _, r := range cfg.Reconcile {
		reconciled = append(reconciled, r.Portal+"."+r.Entity)
	}
	s, err := routes.OpenSync(ctx, js, cfg.Bus.Replicas, cfg.Sync.Echo != config.EchoOff, cfg.Sync.EchoTTLOrDefault(), users, reconciled, log)
	if err != nil {
		return nil, nil, err
	}
	s.Suppressed = sm.EchoSuppressed
	return s, sm, nil
}

// newReconcilers returns a reconciler per reconcile entry, on the portal
// clients the routes use (one rate budget per portal).
func newReconcilers(ctx context.Context, cfg *config.Config, js jetstream.JetStream, portals map[string]*outbound.Bitrix24,
	publish reconcile.PublishFunc, rec hookgate.Recorder, sm *metrics.Sync, log *slog.Logger) ([]*reconcile.Reconciler, error) {
	if len(cfg.Reconcile) == 0 {
		return nil, nil
	}
	state, err := reconcile.Bucket(ctx, js, cfg.Bus.Replicas)
	if err != nil {
		return nil, err
	}
	seen, err := routes.SeenBucket(ctx, js, cfg.Bus.Replicas)
	if err != nil {
		return nil, err
	}
	var out []*reconcile.Reconciler
	for i, rc := range cfg.Reconcile {
		r, err := reconcile.New(rc, reconcile.Deps{
			Client: portals[rc.Portal], State: state, Seen: seen, Publish: publish,
			Recorder: rec, Logger: log, Observe: sm.ReconcileRun,
		})
		if err != nil {
			return nil, fmt.Errorf("reconcile[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}
