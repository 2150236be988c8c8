package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/jobs"
)

// cmdDead lists dead-lettered jobs or replays one:
//
//	hookgate dead list [--json]
//	hookgate dead replay ID
//
// It uses the running gateway's bus; with no gateway running and an
// embedded bus, it opens the bus under data_dir itself (no listener).
func cmdDead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("dead", stderr)
	asJSON := fs.Bool("json", false, "list as JSON")
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	if fs.Arg(0) == "list" && fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: hookgate dead [--config FILE] list [--json] | replay ID")
		return exitError(2)
	}
	if fs.NArg() == 0 || (fs.Arg(0) == "replay" && fs.NArg() != 2) || (fs.Arg(0) != "list" && fs.Arg(0) != "replay") {
		fmt.Fprintln(stderr, "usage: hookgate dead [--config FILE] list [--json] | replay ID")
		return exitError(2)
	}
	if fs.Arg(0) == "list" {
		return deadList(ctx, *path, *asJSON, stdout)
	}
	q, closeBus, err := cliQueue(ctx, *path)
	if err != nil {
		return err
	}
	defer closeBus()
	if err := q.Replay(ctx, fs.Arg(1)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %s\n", fs.Arg(1))
	return nil
}

// cliQueue opens the job queue on the gateway's bus.
func cliQueue(ctx context.Context, path string) (*jobs.Queue, func(), error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	bus, err := openBusForCLI(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	q, err := jobs.New(ctx, bus.JetStream(), jobsConfig(cfg))
	if err != nil {
		bus.Close()
		return nil, nil, err
	}
	return q, func() { bus.Close() }, nil
}

func deadList(ctx context.Context, path string, asJSON bool, stdout io.Writer) error {
	q, closeBus, err := cliQueue(ctx, path)
	if err != nil {
		return err
	}
	defer closeBus()
	dead, err := q.Dead(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dead)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tEVENT\tATTEMPTS\tDIED\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.Job.ID, d.Job.Kind, d.Job.EventID, d.Attempts,
			d.DeadAt.UTC().Format(time.RFC3339), oneLine(d.LastError, 120))
	}
	return tw.Flush()
}

// openBusForCLI connects to the running gateway's bus (bus.url, else
// bus.listen); when nothing answers and the bus is embedded, it opens the
// store under data_dir with no listener.
func openBusForCLI(ctx context.Context, cfg *config.Config) (*events.Bus, error) {
	bus, err := connectBus(cfg, "hookgate-cli")
	if err == nil || cfg.Bus.URL != "" {
		return bus, err
	}
	return events.Open(ctx, cfg.Bus, cfg.DataDir, events.WithoutListener())
}

// connectBus connects to the running bus: bus.url as it is (credentials in
// the URL), or the embedded bus at bus.listen with the token its gateway
// wrote to data_dir/bus.token (and TLS when bus.tls is set).
func connectBus(cfg *config.Config, name string) (*events.Bus, error) {
	if cfg.Bus.URL != "" {
		return events.Connect(cfg.Bus.URL, events.WithName(name))
	}
	token, err := events.ReadToken(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("%w (the embedded bus's token is made by hookgate serve with this data_dir)", err)
	}
	opts := []events.Option{events.WithName(name), events.WithToken(token)}
	scheme := "nats://"
	if cfg.Bus.TLS.CertFile != "" {
		opts, scheme = append(opts, events.WithTLS(cfg.Bus.TLS.CertFile)), "tls://"
	}
	return events.Connect(scheme+cfg.Bus.Listen, opts...)
}

func oneLine(s string, n int) string {
	b := []rune(s)
	for i, r := range b {
		if r == '\n' || r == '\t' {
			b[i] = ' '
		}
	}
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
