package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/telemetry"
)

// cmdCheck validates a config without starting anything: no server, no
// bus, no folder. Every problem comes at once with its key path (unknown
// keys, bad values, provider options, route templates, then the secrets
// each reference names, unless --offline), followed by a one-line summary
// of what would run.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("check", stderr)
	offline := fs.Bool("offline", false, "do not read the secrets (for CI without Vault)")
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitError(2)
	}
	file, err := configPath(*path)
	if err != nil {
		return err
	}
	cfg, problems, err := config.LoadChecked(file, os.Environ(), known(registry()))
	if err != nil {
		return err
	}
	if cfg != nil {
		// the OTEL_* variables serve would read (an unknown protocol)
		if _, err := telemetry.Resolve(cfg.Telemetry, os.Getenv); err != nil {
			problems = append(problems, config.Problem{Path: "telemetry.protocol", Message: err.Error()})
		}
	}
	if cfg != nil && !*offline && !hasPrefix(problems, "secrets") {
		problems = append(problems, secretProblems(ctx, cfg)...)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", file, len(problems))
		for _, p := range problems {
			fmt.Fprintln(stderr, "  "+p.String())
		}
		return exitError(1)
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", file, summary(cfg, *offline))
	return nil
}

// secretProblems reads every secret reference of cfg, each a problem at
// its key path when missing; a store that cannot be opened or reached is
// one problem at its key.
func secretProblems(ctx context.Context, cfg *config.Config) config.Problems {
	log := slog.New(slog.DiscardHandler)
	secrets, err := openSecrets(ctx, cfg, log, redactOf(log))
	if err != nil {
		return config.Problems{{Path: secretsKey(cfg), Message: err.Error()}}
	}
	defer secrets.Close()
	if err := secrets.Check(ctx); err != nil {
		return config.Problems{{Path: secretsKey(cfg), Message: secrets.Redact(err.Error())}}
	}
	var ps config.Problems
	if err := checkSecrets(ctx, cfg, secrets, log); err != nil && !errors.As(err, &ps) {
		return config.Problems{{Path: secretsKey(cfg), Message: err.Error()}}
	}
	return ps
}

// secretsKey is the key that names where the secrets live.
func secretsKey(cfg *config.Config) string {
	if cfg.Secrets.Backend == "vault" {
		return "secrets.vault.address"
	}
	return "secrets.file"
}

func hasPrefix(ps config.Problems, prefix string) bool {
	for _, p := range ps {
		if p.Path == prefix || strings.HasPrefix(p.Path, prefix+".") {
			return true
		}
	}
	return false
}

// summary is the one line of what a config would run.
func summary(cfg *config.Config, offline bool) string {
	ids := make([]string, len(cfg.Sources))
	for i, s := range cfg.Sources {
		ids[i] = s.ID + " (" + s.Provider + ")"
	}
	secrets := "file " + cfg.Secrets.File
	if cfg.Secrets.Backend == "vault" {
		secrets = "Vault at " + cfg.Secrets.Vault.Address
	}
	if offline {
		secrets += " (not read: --offline)"
	}
	bus := "embedded at " + cfg.Bus.Listen + ", stored in " + filepath.Join(cfg.DataDir, "jetstream")
	if cfg.Bus.URL != "" {
		bus = cfg.Bus.URL
	}
	hist := "NDJSON files in " + filepath.Join(cfg.DataDir, "history")
	if len(cfg.History.ClickHouse.Addr) > 0 {
		hist = "ClickHouse " + strings.Join(cfg.History.ClickHouse.Addr, ",") + " database " + cfg.History.ClickHouse.Database
	}
	tracing := "off"
	if set, err := telemetry.Resolve(cfg.Telemetry, os.Getenv); err == nil && set.On {
		tracing = set.Protocol + " to " + set.EndpointFrom
		if set.Endpoint != "" {
			tracing = set.Protocol + " to " + set.Endpoint
		}
	}
	return fmt.Sprintf("%d sources [%s], %d portals, %d routes; listen %s; secrets: %s; bus: %s; history: %s; tracing: %s",
		len(cfg.Sources), strings.Join(ids, ", "), len(cfg.Portals), len(cfg.Routes), cfg.Server.Listen, secrets, bus, hist, tracing)
}
