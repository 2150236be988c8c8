package analytics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/history"
)

// ClickHouse reads the history table over the native protocol. Its SQL
// runs on ClickHouse 18.16 and on current servers.
type ClickHouse struct {
	conn     driver.Conn
	database string
}

var _ Source = (*ClickHouse)(nil)

// NewClickHouse reads database.exchanges (database "" = hookgate) on conn.
func NewClickHouse(conn driver.Conn, database string) *ClickHouse {
	if database == "" {
		database = history.DefaultDatabase
	}
	return &ClickHouse{conn: conn, database: database}
}

func (c *ClickHouse) table() string {
	return "`" + strings.ReplaceAll(c.database, "`", "\\`") + "`." + history.Table
}

// Trace implements Source.
func (c *ClickHouse) Trace(ctx context.Context, eventID string) ([]hookgate.Exchange, error) {
	q := `SELECT ` + history.SelectList() + `
	      FROM ` + c.table() + `
	      WHERE event_id = ?
	      ORDER BY ts, direction, operation = 'deliver', attempt`
	rows, err := c.conn.Query(ctx, q, eventID)
	if err != nil {
		return nil, fmt.Errorf("analytics: trace %s: %w", eventID, err)
	}
	defer rows.Close()
	var out []hookgate.Exchange
	for rows.Next() {
		var x hookgate.Exchange
		if err := history.ScanExchange(rows.Scan, &x); err != nil {
			return nil, fmt.Errorf("analytics: trace %s: %w", eventID, err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: trace %s: %w", eventID, err)
	}
	return out, nil
}

// Summary implements Source.
func (c *ClickHouse) Summary(ctx context.Context, source string, since time.Time) ([]SummaryRow, error) {
	q := `SELECT toString(direction) AS dir, source, operation, outcome, count() AS n,
	         toFloat64(quantile(0.5)(duration_ms)), toFloat64(quantile(0.95)(duration_ms)), toFloat64(max(duration_ms)),
	         argMaxIf(error, ts, error != ''), min(ts), max(ts)
	      FROM ` + c.table() + `
	      WHERE ts >= toDateTime(?) AND (? = '' OR source = ?)
	      GROUP BY direction, source, operation, outcome
	      ORDER BY direction, source, operation, outcome`
	rows, err := c.conn.Query(ctx, q, since.Unix(), source, source)
	if err != nil {
		return nil, fmt.Errorf("analytics: summary: %w", err)
	}
	defer rows.Close()
	var out []SummaryRow
	for rows.Next() {
		var r SummaryRow
		var dir string
		if err := rows.Scan(&dir, &r.Source, &r.Operation, &r.Outcome, &r.Count, &r.P50MS, &r.P95MS, &r.MaxMS,
			&r.LastError, &r.First, &r.Last); err != nil {
			return nil, fmt.Errorf("analytics: summary: %w", err)
		}
		r.Direction = hookgate.ParseDirection(dir)
		r.First, r.Last = r.First.UTC(), r.Last.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: summary: %w", err)
	}
	return out, nil
}
