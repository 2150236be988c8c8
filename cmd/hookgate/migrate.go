package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/vault"
)

// cmdMigrate creates or upgrades the ClickHouse schema.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("migrate", stderr)
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if len(cfg.History.ClickHouse.Addr) == 0 {
		return errors.New("history.clickhouse.addr is empty: history goes to NDJSON files, there is no schema to migrate")
	}
	log, redact := newLogger(cfg.Log, stderr)
	secrets, err := vault.New(ctx, cfg.Secrets, vault.WithLogger(log))
	if err != nil {
		return err
	}
	defer secrets.Close()
	rf := secrets.Redact
	redact.Store(&rf)
	var password string
	if ref := cfg.History.ClickHouse.Password; ref != "" {
		s, err := secrets.Secret(ctx, ref)
		if err != nil {
			return fmt.Errorf("history.clickhouse.password: %w", err)
		}
		password = s.Reveal()
	}
	conn, err := history.Open(cfg.History, password)
	if err != nil {
		return err
	}
	defer conn.Close()
	db := cfg.History.ClickHouse.Database
	if err := history.Migrate(ctx, conn, db, cfg.History.Retention.D()); err != nil {
		return fmt.Errorf("migrate: %s", secrets.Redact(err.Error()))
	}
	v, err := history.SchemaVersion(ctx, conn, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s.exchanges at schema version %d\n", db, v)
	return nil
}
