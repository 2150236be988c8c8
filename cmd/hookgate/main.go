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
  check   [--config FILE] [--offline]              check a config without starting anything
  migrate [--config FILE]                          create/upgrade the ClickHouse schema
  call    [--config FILE] PORTAL METHOD [k=v ...]  one Bitrix24 REST call, JSON result on stdout
  tail    [--config FILE] [--since D | --all] [SOURCE [EVENT] | SUBJECT]
                                                   print events from the bus as they arrive
  dead    [--config FILE] list [--json] | replay ID   dead-lettered jobs
  routes  [--config FILE] disabled | enable NAME   routes disabled by a 410 from the platform
  history [--config FILE] --event-id ID | --source S [--since 1h]
  version                                          print the version
  help [COMMAND]                                   this text, or a command's description and flags

Flags may come before or after the other arguments. hookgate CMD --help
describes CMD.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// a second Ctrl-C (or SIGTERM) during the graceful stop forces it
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "hookgate: second signal, stopping now")
		os.Exit(130)
	}()
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
	case "check":
		return cmdCheck(ctx, rest, stdout, stderr)
	case "help", "--help", "-h":
		if len(rest) > 0 {
			if _, ok := commandHelp[rest[0]]; ok {
				return run(ctx, []string{rest[0], "--help"}, stdout, stdout)
			}
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "hookgate: unknown command %q\n\n%s", cmd, usage)
	return exitError(2)
}

// commandHelp is each command's synopsis and description, for
// `hookgate CMD --help`.
var commandHelp = map[string][2]string{
	"serve":   {"serve [--config FILE]", "Runs the gateway: checks the config and its secrets first (as `check` does), then serves webhooks, routes events and records history until SIGTERM or Ctrl-C (a second Ctrl-C stops at once)."},
	"check":   {"check [--config FILE] [--offline]", "Checks a config without starting anything (no server, no bus, no folder): every problem at once, each with its key path, then a one-line summary of what would run. --offline skips reading the secrets."},
	"migrate": {"migrate [--config FILE]", "Creates or upgrades the ClickHouse schema of history.clickhouse (serve does it too)."},
	"call":    {"call [--config FILE] PORTAL METHOD [key=value ...]", "Makes one Bitrix24 REST call through the portal's client and prints the JSON result."},
	"tail":    {"tail [--config FILE] [--since D | --all] [SOURCE [EVENT] | SUBJECT]", "Prints events as they arrive, one CloudEvent per line (credentials are [redacted]); --since and --all print stored ones first."},
	"dead":    {"dead [--config FILE] list [--json] | replay ID", "Lists dead-lettered jobs, or replays one."},
	"routes":  {"routes [--config FILE] disabled | enable NAME", "Lists the routes a 410 from the platform disabled, or enables one again."},
	"history": {"history [--config FILE] --event-id ID | --source S [--since 1h]", "Reads history: one event's exchanges, or a source's summary."},
}

// errHelp is returned by parseArgs after it printed a command's help.
var errHelp = flag.ErrHelp

// flags makes a command's flag set with the shared --config flag; its
// usage prints the command's synopsis, description and flags.
func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("hookgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default hookgate.yaml when present; HOOKGATE_CONFIG)")
	fs.Usage = func() {
		h := commandHelp[name]
		fmt.Fprintf(fs.Output(), "usage: hookgate %s\n\n%s\n\nflags:\n", h[0], h[1])
		fs.PrintDefaults()
	}
	return fs, path
}

// parseArgs parses args with the flags anywhere among the positional
// arguments (`call main crm.deal.get id=1 --config X`); "--" ends the
// flags. Afterwards fs.Args() holds the positional arguments. -h, -help
// and --help print the command's help and return errHelp; the command
// then exits 0 (see parseExit).
func parseArgs(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// parseUsage is parseArgs for a command with a usage text of its own:
// --help prints text and the flags on stdout and returns errHelp; a bad
// flag, or positional arguments valid refuses, print them on stderr and
// return an error. The command answers parseExit(err).
func parseUsage(fs *flag.FlagSet, args []string, text string, stdout, stderr io.Writer, valid func(pos []string) bool) ([]string, error) {
	usage := func(w io.Writer) {
		fmt.Fprint(w, text)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed here, on stdout for --help
	err := parseArgs(fs, args)
	if errors.Is(err, errHelp) {
		usage(stdout)
		return nil, err
	}
	if err != nil || !valid(fs.Args()) {
		usage(stderr)
		return nil, exitError(2)
	}
	return fs.Args(), nil
}

// parseExit is a command's answer to a parseArgs error: nil after --help,
// exit status 2 after a bad flag (flag has said why).
func parseExit(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return exitError(2)
}

// loadConfig loads and validates the config file.
func loadConfig(path string) (*config.Config, error) {
	path, err := configPath(path)
	if err != nil {
		return nil, err
	}
	return config.LoadValid(path, os.Environ(), known(registry()))
}

// errNoConfig is the answer to a command run with no config to read.
var errNoConfig = errors.New("no config: pass --config FILE, set HOOKGATE_CONFIG, or create hookgate.yaml here (a sample to start from: examples/hookgate.yaml, run with `hookgate serve --config examples/hookgate.yaml`)")

// configPath is the config file to read: --config, else HOOKGATE_CONFIG,
// else ./hookgate.yaml; none of them is an error.
func configPath(path string) (string, error) {
	if path == "" {
		path = os.Getenv("HOOKGATE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("hookgate.yaml"); err == nil {
			path = "hookgate.yaml"
		}
	}
	if path == "" {
		return "", errNoConfig
	}
	return path, nil
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
		if cfg.Secrets.Backend == "file" {
			return nil, fmt.Errorf("secrets.file: %w", err)
		}
		return nil, fmt.Errorf("secrets.vault: %w", err)
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
