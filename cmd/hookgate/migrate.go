package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hookgate/hookgate/history"
)

// cmdMigrate creates or upgrades the ClickHouse schema.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("migrate", stderr)
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if len(cfg.History.ClickHouse.Addr) == 0 {
		return errors.New("history.clickhouse.addr is empty: history goes to NDJSON files, there is no schema to migrate")
	}
	log, redact := newLogger(cfg.Log, stderr)
	secrets, err := openSecrets(ctx, cfg, log, redact)
	if err != nil {
		return err
	}
	defer secrets.Close()
	password, err := historyPassword(ctx, cfg, secrets)
	if err != nil {
		return err
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
