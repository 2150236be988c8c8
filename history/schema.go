package history

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Table is the history table's name inside its database.
const Table = "exchanges"

// MigrationsTable records the schema migrations applied to a database.
const MigrationsTable = "schema_migrations"

// ServerVersion is a ClickHouse server version as version() reports it.
type ServerVersion struct {
	Major, Minor int
}

// Modern reports whether the server has DateTime64, TTL, column codecs and
// production LowCardinality (all there from 20.1 on).
func (v ServerVersion) Modern() bool { return v.Major > 20 || v.Major == 20 && v.Minor >= 1 }

func (v ServerVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

var versionRE = regexp.MustCompile(`^\s*(\d+)\.(\d+)`)

// ParseServerVersion reads "18.16.1" or "26.7.2.1".
func ParseServerVersion(s string) (ServerVersion, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return ServerVersion{}, fmt.Errorf("history: unreadable server version %q", s)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return ServerVersion{Major: major, Minor: minor}, nil
}

// migration is one numbered schema change. Migrations are additive: a new
// version appends statements (ALTER TABLE ... ADD COLUMN, see addsColumn),
// never edits an applied one.
type migration struct {
	version uint32
	name    string
	ddl     func(v ServerVersion, database string, retention time.Duration) []string
	// addsColumn names the column a migration adds: Migrate runs it only
	// when the table lacks that column (ClickHouse 18.16 has no ADD
	// COLUMN IF NOT EXISTS).
	addsColumn string
}

var migrations = []migration{
	{version: 1, name: "create exchanges", ddl: createExchanges},
	{version: 2, name: "add trace_id", ddl: addTraceID, addsColumn: "trace_id"},
}

// addTraceID is migration 2: the trace_id column (OpenTelemetry trace id,
// "" when tracing is off), added at the end of a table that migration 1
// made before it existed. A table created since already has it (migration
// 1 makes every column of columns): Migrate skips it there. Old rows read
// as "". The same statement on ClickHouse 18.16 and modern servers.
func addTraceID(v ServerVersion, database string, _ time.Duration) []string {
	c := columnByName("trace_id")
	return []string{fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s %s", quoteIdent(database), Table, c.name, c.typ(v))}
}

// columnByName returns the column called name; it panics for a name
// that is not one (a migration naming a column that columns lacks).
func columnByName(name string) *column {
	for i := range columns {
		if columns[i].name == name {
			return &columns[i]
		}
	}
	panic("history: no column " + name)
}

// createExchanges is migration 1: the table of SPEC.md (columns), with
// every column of columns, also those later migrations add to older
// tables. On a modern server it uses DateTime64(3), LowCardinality, codecs and a TTL; on an old one
// (18.16) DateTime, String, no codecs and no TTL. Both keep the time zone
// fixed at UTC so that the text form of ts ("YYYY-MM-DD hh:mm:ss") means the
// same whatever the server's own time zone is.
func createExchanges(v ServerVersion, database string, retention time.Duration) []string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s\n(\n", quoteIdent(database), Table)
	for i := range columns {
		sep := ","
		if i == len(columns)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    %s %s%s\n", columns[i].name, columns[i].typ(v), sep)
	}
	b.WriteString(")\nENGINE = MergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (direction, source, ts)")
	if v.Modern() && retention > 0 {
		fmt.Fprintf(&b, "\nTTL toDateTime(ts) + INTERVAL %d SECOND", int64(retention/time.Second))
	}
	return []string{b.String()}
}

// DDL returns every statement that builds the history schema from nothing
// on a server of the given version (as version() reports it): the
// database, the migrations table and each migration in order. Migrate runs
// the same statements; DDL exists so the modern form can be checked on a
// server Migrate cannot reach (chDB).
func DDL(version, database string, retention time.Duration) ([]string, error) {
	v, err := ParseServerVersion(version)
	if err != nil {
		return nil, err
	}
	stmts := bootstrapDDL(database)
	for _, m := range migrations {
		if m.addsColumn != "" {
			continue // migration 1 made it: Migrate skips it too
		}
		stmts = append(stmts, m.ddl(v, database, retention)...)
	}
	return stmts, nil
}

func bootstrapDDL(database string) []string {
	db := quoteIdent(database)
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version", db, MigrationsTable),
	}
}

// Migrate brings database up to the latest schema: it creates the database,
// the migrations table and runs every migration not yet recorded there.
// Running it again is a no-op. retention is the TTL of the rows where the
// server supports one (0 = no TTL).
//
// Two gateways migrating at the same moment is harmless: every statement is
// IF NOT EXISTS, and a version recorded twice reads as applied.
func Migrate(ctx context.Context, conn driver.Conn, database string, retention time.Duration) error {
	if database == "" {
		database = DefaultDatabase
	}
	var raw string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		return fmt.Errorf("history: read server version: %w", err)
	}
	v, err := ParseServerVersion(raw)
	if err != nil {
		return err
	}
	for _, stmt := range bootstrapDDL(database) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("history: bootstrap schema: %w", err)
		}
	}
	applied, err := appliedMigrations(ctx, conn, database)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		if err := runMigration(ctx, conn, database, v, retention, m); err != nil {
			return err
		}
		// A batch, not INSERT ... VALUES through Exec: 18.16 answers an
		// INSERT with a data block that Exec never reads.
		b, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.%s (version, name, applied_at)", quoteIdent(database), MigrationsTable))
		if err == nil {
			if err = b.Append(m.version, m.name, time.Now()); err == nil {
				err = b.Send()
			} else {
				b.Abort()
			}
		}
		if err != nil {
			return fmt.Errorf("history: record migration %d: %w", m.version, err)
		}
	}
	return nil
}

// runMigration runs m's statements, unless the column it adds is there
// already (a table created since, or another gateway migrating at the
// same moment: its ALTER fails here, and the column it made counts).
func runMigration(ctx context.Context, conn driver.Conn, database string, v ServerVersion, retention time.Duration, m migration) error {
	has := func() (bool, error) {
		if m.addsColumn == "" {
			return false, nil
		}
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
			database, Table, m.addsColumn).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("history: migration %d (%s): read columns: %w", m.version, m.name, err)
		}
		return n > 0, nil
	}
	if ok, err := has(); err != nil || ok {
		return err
	}
	for _, stmt := range m.ddl(v, database, retention) {
		if err := conn.Exec(ctx, stmt); err != nil {
			if ok, _ := has(); ok {
				return nil
			}
			return fmt.Errorf("history: migration %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest migration applied to database (0 when
// none).
func SchemaVersion(ctx context.Context, conn driver.Conn, database string) (uint32, error) {
	applied, err := appliedMigrations(ctx, conn, database)
	if err != nil {
		return 0, err
	}
	var top uint32
	for v := range applied {
		top = max(top, v)
	}
	return top, nil
}

func appliedMigrations(ctx context.Context, conn driver.Conn, database string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT version FROM %s.%s", quoteIdent(database), MigrationsTable))
	if err != nil {
		return nil, fmt.Errorf("history: read applied migrations: %w", err)
	}
	defer rows.Close()
	applied := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("history: read applied migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: read applied migrations: %w", err)
	}
	return applied, nil
}

// quoteIdent quotes a database name for ClickHouse SQL with backticks.
func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(name, `\`, `\\`), "`", "\\`") + "`"
}
