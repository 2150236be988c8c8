package main

import (
	"context"
	"io"
	"strings"

	"github.com/hookgate/hookgate/analytics"
)

// cmdHistory prints an event's trace (--event-id) or a summary table
// (--source, --since) from ClickHouse or the NDJSON history files.
func cmdHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs, _ := flags("history", stdout)
			fs.Usage()
			return nil
		}
	}
	path, rest := configArg(args)
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	var password string
	if cfg.History.ClickHouse.Password != "" {
		log, redact := newLogger(cfg.Log, stderr)
		secrets, err := openSecrets(ctx, cfg, log, redact)
		if err != nil {
			return err
		}
		defer secrets.Close()
		if password, err = historyPassword(ctx, cfg, secrets); err != nil {
			return err
		}
	}
	src, closeSrc, err := analytics.Open(cfg.History, cfg.DataDir, password)
	if err != nil {
		return err
	}
	defer closeSrc()
	return analytics.Run(ctx, src, rest, stdout)
}

// configArg takes --config FILE (or --config=FILE) out of args.
func configArg(args []string) (path string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				path = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			path = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return path, rest
}
