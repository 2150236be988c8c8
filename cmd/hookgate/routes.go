package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/routes"
)

// cmdRoutes lists the routes disabled by a 410 from the platform, or
// re-enables one:
//
//	hookgate routes disabled
//	hookgate routes enable NAME
//
// After enabling, replay the route's dead jobs (hookgate dead replay ID).
func cmdRoutes(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("routes", stderr)
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	usage := func() error {
		fmt.Fprintln(stderr, "usage: hookgate routes [--config FILE] disabled | enable NAME")
		return exitError(2)
	}
	if fs.NArg() == 0 {
		return usage()
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	bus, err := openBusForCLI(ctx, cfg)
	if err != nil {
		return err
	}
	defer bus.Close()
	kv, err := routes.DisabledBucket(ctx, bus.JetStream(), cfg.Bus.Replicas)
	if err != nil {
		return err
	}
	switch {
	case fs.Arg(0) == "disabled" && fs.NArg() == 1:
		list, err := routes.ListDisabled(ctx, kv)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROUTE\tDISABLED AT\tURL\tJOB\tERROR")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Route, d.At.UTC().Format(time.RFC3339), d.URL, d.JobID, oneLine(d.Error, 100))
		}
		return tw.Flush()
	case fs.Arg(0) == "enable" && fs.NArg() == 2:
		name := fs.Arg(1)
		if !slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Name == name }) {
			return fmt.Errorf("unknown route %q", name)
		}
		if err := routes.EnableRoute(ctx, kv, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enabled %s\n", name)
		return nil
	}
	return usage()
}
