// Command hookgate is the integration gateway: serve webhooks, call
// Bitrix24, tail the bus, manage dead letters, read history.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/apikey"
	"github.com/hookgate/hookgate/providers/bitrix24"
	"github.com/hookgate/hookgate/providers/github"
	"github.com/hookgate/hookgate/providers/standard"
	"github.com/hookgate/hookgate/providers/stripe"
	"github.com/hookgate/hookgate/providers/token"
	"github.com/hookgate/hookgate/routes"
	"github.com/hookgate/hookgate/vault"
)

// registry lists every provider adapter: adding one is one line here.
func registry() *providers.Registry {
	r := providers.NewRegistry()
	r.Register("bitrix24", bitrix24.Constructor)
	r.Register("apikey", apikey.Constructor)
	r.Register("token", token.Constructor)
	r.Register("standard", standard.Constructor)
	r.Register("github", github.Constructor)
	r.Register("stripe", stripe.Constructor) // the worked example of docs/providers.md
	return r
}

const usage = `usage: hookgate <command> [flags]

commands:
  serve   [--config FILE]                          run the gateway
  migrate [--config FILE]                          create/upgrade the ClickHouse schema
  call    [--config FILE] PORTAL METHOD [k=v ...]  one Bitrix24 REST call, JSON result on stdout
  tail    [--config FILE] [SUBJECT]                print events from the bus as they arrive
  dead    [--config FILE] list [--json] | replay ID   dead-lettered jobs
  routes  [--config FILE] disabled | enable NAME   routes disabled by a 410 from the platform
  history [--config FILE] --event-id ID | --source S [--since 1h]
  version                                          print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "hookgate:", err)
		os.Exit(1)
	}
}

// exitError is an exit status for a command that already said why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "call":
		return cmdCall(ctx, rest, stdout, stderr)
	case "tail":
		return cmdTail(ctx, rest, stdout, stderr)
	case "dead":
		return cmdDead(ctx, rest, stdout, stderr)
	case "history":
		return cmdHistory(ctx, rest, stdout, stderr)
	case "routes":
		return cmdRoutes(ctx, rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "hookgate", hookgate.Version)
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "hookgate: unknown command %q\n\n%s", cmd, usage)
	return exitError(2)
}

// flags makes a command's flag set with the shared --config flag.
func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("hookgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default hookgate.yaml when present; HOOKGATE_CONFIG)")
	return fs, path
}

// loadConfig loads and validates the config file.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		path = os.Getenv("HOOKGATE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("hookgate.yaml"); err == nil {
			path = "hookgate.yaml"
		}
	}
	return config.LoadValid(path, os.Environ(), known(registry()))
}

// known is what config validation needs of the providers and routes:
// provider names, each source run through its constructor (its problems
// at their key paths; its signature tolerance bounds bus.dedup_window),
// and the routes' templates compiled.
func known(reg *providers.Registry) config.Known {
	return config.Known{
		Providers: reg.Names(),
		Source: func(src config.Source) (time.Duration, config.Problems) {
			p, ps := reg.Check(src)
			if len(ps) > 0 {
				return 0, ps
			}
			if t, ok := p.(interface{ Tolerance() time.Duration }); ok {
				return t.Tolerance(), nil
			}
			return 0, nil
		},
		Routes: routes.Check,
	}
}

// openSecrets opens the secret store and makes the logger redact every
// value it serves.
func openSecrets(ctx context.Context, cfg *config.Config, log *slog.Logger, redact redactPtr, opts ...vault.Option) (*vault.Store, error) {
	opts = append([]vault.Option{vault.WithLogger(log)}, opts...)
	secrets, err := vault.New(ctx, cfg.Secrets, opts...)
	if err != nil {
		return nil, err
	}
	rf := secrets.Redact
	redact.Store(&rf)
	return secrets, nil
}

// historyPassword resolves history.clickhouse.password ("" when unset).
func historyPassword(ctx context.Context, cfg *config.Config, secrets *vault.Store) (string, error) {
	ref := cfg.History.ClickHouse.Password
	if ref == "" {
		return "", nil
	}
	s, err := secrets.Secret(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("history.clickhouse.password: %w", err)
	}
	return s.Reveal(), nil
}
