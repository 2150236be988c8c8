package analytics

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/history"
)

// Browser is what the web console reads of history beyond Source: a paged
// search, one row by its exchange id, rates over time and the reasons of
// rejections. *ClickHouse and *Files implement it.
type Browser interface {
	Source
	// Search returns the rows matching f, newest first, skipping f.Offset
	// and returning at most f.Limit (the request's bodies left out).
	Search(ctx context.Context, f Filter) ([]hookgate.Exchange, error)
	// Exchange returns one row, bodies included, or ErrNotFound.
	Exchange(ctx context.Context, exchangeID string) (hookgate.Exchange, error)
	// Series counts the rows with ts >= since in buckets of step, by
	// direction and outcome, oldest bucket first.
	Series(ctx context.Context, since time.Time, step time.Duration) ([]Point, error)
	// Reasons counts the rejected inbound rows with ts >= since by source
	// and error code, most frequent first.
	Reasons(ctx context.Context, since time.Time) ([]Reason, error)
}

var (
	_ Browser = (*ClickHouse)(nil)
	_ Browser = (*Files)(nil)
)

// MaxLimit is the most rows one Search returns; MaxOffset the deepest page.
const (
	MaxLimit  = 500
	MaxOffset = 10000
)

// Filter selects history rows. Empty fields match everything.
type Filter struct {
	Source    string // exact source id (inbound) or portal / destination (outbound)
	Event     string // exact event name (inbound) or operation (outbound)
	Outcome   string
	Status    uint16 // 0 = any
	Direction hookgate.Direction
	EventID   string
	From, To  time.Time // ts >= From, ts < To; zero = open
	Offset    int
	Limit     int // 0 = 50
}

// Normalize applies the defaults and bounds of a filter and reports a
// problem a caller should show.
func (f *Filter) Normalize() error {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, MaxLimit)
	if f.Offset < 0 {
		f.Offset = 0
	}
	if f.Offset > MaxOffset {
		return fmt.Errorf("analytics: pages end at row %d; narrow the search", MaxOffset)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return errors.New("analytics: the time range is empty (from must be before to)")
	}
	return nil
}

func (f *Filter) match(x *hookgate.Exchange) bool {
	switch {
	case f.Source != "" && x.Source != f.Source,
		f.Event != "" && x.Event != f.Event && x.Operation != f.Event,
		f.Outcome != "" && x.Outcome != f.Outcome,
		f.Status != 0 && x.Status != f.Status,
		f.Direction != 0 && x.Direction != f.Direction,
		f.EventID != "" && x.EventID != f.EventID,
		!f.From.IsZero() && x.TS.Before(f.From),
		!f.To.IsZero() && !x.TS.Before(f.To):
		return false
	}
	return true
}

// Point is the count of one direction and outcome in one bucket.
type Point struct {
	Bucket    time.Time
	Direction hookgate.Direction
	Outcome   string
	Count     uint64
}

// Reason is the count of one source's rejections with one error code.
type Reason struct {
	Source string
	Error  string
	Count  uint64
}

// NotYet reports whether err says the history table does not exist yet
// (ClickHouse's UNKNOWN_DATABASE or UNKNOWN_TABLE: the writer creates them
// before its first insert): no history, rather than a failure.
func NotYet(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && (ex.Code == 81 || ex.Code == 60)
}

// newerFirst orders search results: ts descending, then exchange id.
func newerFirst(a, b hookgate.Exchange) bool {
	if !a.TS.Equal(b.TS) {
		return a.TS.After(b.TS)
	}
	return a.ExchangeID > b.ExchangeID
}

// light drops the bulky columns a result list does not show.
func light(x *hookgate.Exchange) {
	x.RequestHeaders, x.RequestBody, x.ResponseBody = "", "", ""
}

// Search implements Browser. It scans every file, keeping only the newest
// Offset+Limit matches, so memory stays bounded by the page asked for.
func (s *Files) Search(ctx context.Context, f Filter) ([]hookgate.Exchange, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	keep := f.Offset + f.Limit
	var top []hookgate.Exchange
	err := s.each(ctx, func(x hookgate.Exchange) {
		if !f.match(&x) {
			return
		}
		light(&x)
		top = append(top, x)
		if len(top) >= 2*keep+64 { // prune now and then, not on every row
			sort.Slice(top, func(i, j int) bool { return newerFirst(top[i], top[j]) })
			top = top[:keep]
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(top, func(i, j int) bool { return newerFirst(top[i], top[j]) })
	if f.Offset >= len(top) {
		return nil, nil
	}
	return top[f.Offset:min(len(top), keep)], nil
}

// Exchange implements Browser.
func (s *Files) Exchange(ctx context.Context, exchangeID string) (hookgate.Exchange, error) {
	var found *hookgate.Exchange
	err := s.each(ctx, func(x hookgate.Exchange) {
		if found == nil && x.ExchangeID == exchangeID {
			found = &x
		}
	})
	if err != nil {
		return hookgate.Exchange{}, err
	}
	if found == nil {
		return hookgate.Exchange{}, fmt.Errorf("%w: exchange %s", ErrNotFound, exchangeID)
	}
	return *found, nil
}

// Series implements Browser.
func (s *Files) Series(ctx context.Context, since time.Time, step time.Duration) ([]Point, error) {
	if step < time.Second {
		return nil, fmt.Errorf("analytics: step must be at least 1s, got %v", step)
	}
	type key struct {
		bucket  int64
		dir     hookgate.Direction
		outcome string
	}
	counts := map[key]uint64{}
	err := s.each(ctx, func(x hookgate.Exchange) {
		if x.TS.Before(since) {
			return
		}
		counts[key{bucketOf(x.TS, step), x.Direction, x.Outcome}]++
	})
	if err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(counts))
	for k, n := range counts {
		out = append(out, Point{Bucket: time.Unix(k.bucket, 0).UTC(), Direction: k.dir, Outcome: k.outcome, Count: n})
	}
	sortPoints(out)
	return out, nil
}

// Reasons implements Browser.
func (s *Files) Reasons(ctx context.Context, since time.Time) ([]Reason, error) {
	counts := map[Reason]uint64{}
	err := s.each(ctx, func(x hookgate.Exchange) {
		if x.TS.Before(since) || x.Direction != hookgate.Inbound || x.Outcome != "rejected" {
			return
		}
		counts[Reason{Source: x.Source, Error: x.Error}]++
	})
	if err != nil {
		return nil, err
	}
	out := make([]Reason, 0, len(counts))
	for k, n := range counts {
		k.Count = n
		out = append(out, k)
	}
	sortReasons(out)
	return out, nil
}

func bucketOf(ts time.Time, step time.Duration) int64 {
	s := int64(step / time.Second)
	u := ts.Unix()
	return u - ((u%s)+s)%s
}

func sortPoints(p []Point) {
	sort.Slice(p, func(i, j int) bool {
		if !p[i].Bucket.Equal(p[j].Bucket) {
			return p[i].Bucket.Before(p[j].Bucket)
		}
		if p[i].Direction != p[j].Direction {
			return p[i].Direction < p[j].Direction
		}
		return p[i].Outcome < p[j].Outcome
	})
}

func sortReasons(r []Reason) {
	sort.Slice(r, func(i, j int) bool {
		if r[i].Count != r[j].Count {
			return r[i].Count > r[j].Count
		}
		if r[i].Source != r[j].Source {
			return r[i].Source < r[j].Source
		}
		return r[i].Error < r[j].Error
	})
}

// listColumns are the columns a search result shows, in ScanExchange's
// order but without the bodies.
const listColumns = `ts, toString(exchange_id), event_id, toString(direction), source, provider, event, operation,
	http_method, url, status, outcome, error, attempt, duration_ms, remote_addr`

// Search implements Browser.
func (c *ClickHouse) Search(ctx context.Context, f Filter) ([]hookgate.Exchange, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if f.Source != "" {
		add("source = ?", f.Source)
	}
	if f.Event != "" {
		add("(event = ? OR operation = ?)", f.Event, f.Event)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if f.Status != 0 {
		add("status = ?", f.Status)
	}
	if f.Direction != 0 {
		add("direction = ?", f.Direction.String())
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	if !f.From.IsZero() {
		add("ts >= toDateTime(?)", f.From.Unix())
	}
	if !f.To.IsZero() {
		add("ts < toDateTime(?)", f.To.Unix()+boolInt(f.To.Nanosecond() > 0))
	}
	q := `SELECT ` + listColumns + ` FROM ` + c.table()
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(` ORDER BY ts DESC, exchange_id DESC LIMIT %d, %d`, f.Offset, f.Limit)
	rows, err := c.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("analytics: search: %w", err)
	}
	defer rows.Close()
	var out []hookgate.Exchange
	for rows.Next() {
		var x hookgate.Exchange
		var dir string
		if err := rows.Scan(&x.TS, &x.ExchangeID, &x.EventID, &dir, &x.Source, &x.Provider, &x.Event, &x.Operation,
			&x.HTTPMethod, &x.URL, &x.Status, &x.Outcome, &x.Error, &x.Attempt, &x.DurationMS, &x.RemoteAddr); err != nil {
			return nil, fmt.Errorf("analytics: search: %w", err)
		}
		x.Direction = hookgate.ParseDirection(dir)
		x.TS = x.TS.UTC()
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: search: %w", err)
	}
	return out, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Exchange implements Browser.
func (c *ClickHouse) Exchange(ctx context.Context, exchangeID string) (hookgate.Exchange, error) {
	q := `SELECT ` + history.SelectList() + ` FROM ` + c.table() + ` WHERE toString(exchange_id) = ? LIMIT 1`
	rows, err := c.conn.Query(ctx, q, exchangeID)
	if err != nil {
		return hookgate.Exchange{}, fmt.Errorf("analytics: exchange %s: %w", exchangeID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return hookgate.Exchange{}, fmt.Errorf("analytics: exchange %s: %w", exchangeID, err)
		}
		return hookgate.Exchange{}, fmt.Errorf("%w: exchange %s", ErrNotFound, exchangeID)
	}
	var x hookgate.Exchange
	if err := history.ScanExchange(rows.Scan, &x); err != nil {
		return hookgate.Exchange{}, fmt.Errorf("analytics: exchange %s: %w", exchangeID, err)
	}
	return x, nil
}

// Series implements Browser.
func (c *ClickHouse) Series(ctx context.Context, since time.Time, step time.Duration) ([]Point, error) {
	s := int64(step / time.Second)
	if s < 1 {
		return nil, fmt.Errorf("analytics: step must be at least 1s, got %v", step)
	}
	q := fmt.Sprintf(`SELECT intDiv(toUInt32(toDateTime(ts)), %d) * %d AS b, toString(direction), outcome, count()
	      FROM %s WHERE ts >= toDateTime(?)
	      GROUP BY b, direction, outcome`, s, s, c.table())
	rows, err := c.conn.Query(ctx, q, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("analytics: series: %w", err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var b uint64
		var dir string
		var p Point
		if err := rows.Scan(&b, &dir, &p.Outcome, &p.Count); err != nil {
			return nil, fmt.Errorf("analytics: series: %w", err)
		}
		p.Bucket, p.Direction = time.Unix(int64(b), 0).UTC(), hookgate.ParseDirection(dir)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: series: %w", err)
	}
	sortPoints(out)
	return out, nil
}

// Reasons implements Browser.
func (c *ClickHouse) Reasons(ctx context.Context, since time.Time) ([]Reason, error) {
	q := `SELECT source, error, count() FROM ` + c.table() + `
	      WHERE ts >= toDateTime(?) AND direction = 'inbound' AND outcome = 'rejected'
	      GROUP BY source, error`
	rows, err := c.conn.Query(ctx, q, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("analytics: reasons: %w", err)
	}
	defer rows.Close()
	var out []Reason
	for rows.Next() {
		var r Reason
		if err := rows.Scan(&r.Source, &r.Error, &r.Count); err != nil {
			return nil, fmt.Errorf("analytics: reasons: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analytics: reasons: %w", err)
	}
	sortReasons(out)
	return out, nil
}
