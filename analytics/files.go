package analytics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/history"
)

// Files reads the NDJSON history files (ClickHouse JSONEachRow, one row a
// line, the table's column names) that the history package writes when no
// ClickHouse is configured. It scans every file: fine for the embedded
// default's volumes; production queries ClickHouse.
type Files struct {
	dir string
}

var _ Source = (*Files)(nil)

// NewFiles reads the files in dir (data_dir/history).
func NewFiles(dir string) *Files { return &Files{dir: dir} }

// each calls f for every row of every file, oldest file first. A last line
// without its newline is a row being written: it is skipped.
func (s *Files) each(ctx context.Context, f func(hookgate.Exchange)) error {
	files, err := history.Files(s.dir)
	if err != nil {
		return fmt.Errorf("analytics: list %s: %w", s.dir, err)
	}
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := eachLine(name, f); err != nil {
			return err
		}
	}
	return nil
}

func eachLine(name string, f func(hookgate.Exchange)) error {
	fh, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // a partial last line (or none)
		}
		if err != nil {
			return fmt.Errorf("analytics: read %s: %w", name, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		x, err := history.ParseJSONEachRow(line)
		if err != nil {
			return fmt.Errorf("analytics: %s:%d: %w", name, n, err)
		}
		f(x)
	}
}

// Trace implements Source.
func (s *Files) Trace(ctx context.Context, eventID string) ([]hookgate.Exchange, error) {
	var out []hookgate.Exchange
	err := s.each(ctx, func(x hookgate.Exchange) {
		if x.EventID == eventID {
			out = append(out, x)
		}
	})
	sort.SliceStable(out, func(i, j int) bool { return TraceLess(out[i], out[j]) })
	return out, err
}

// Summary implements Source.
func (s *Files) Summary(ctx context.Context, source string, since time.Time) ([]SummaryRow, error) {
	type group struct {
		row     SummaryRow
		ms      []float64
		errTime time.Time
	}
	groups := map[SummaryRow]*group{}
	err := s.each(ctx, func(x hookgate.Exchange) {
		if x.TS.Before(since) || source != "" && x.Source != source {
			return
		}
		k := SummaryRow{Direction: x.Direction, Source: x.Source, Operation: x.Operation, Outcome: x.Outcome}
		g := groups[k]
		if g == nil {
			g = &group{row: k}
			g.row.First, g.row.Last = x.TS, x.TS
			groups[k] = g
		}
		g.row.Count++
		g.ms = append(g.ms, float64(x.DurationMS))
		if x.TS.Before(g.row.First) {
			g.row.First = x.TS
		}
		if x.TS.After(g.row.Last) {
			g.row.Last = x.TS
		}
		if x.Error != "" && (g.row.LastError == "" || !x.TS.Before(g.errTime)) {
			g.row.LastError, g.errTime = x.Error, x.TS
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]SummaryRow, 0, len(groups))
	for _, g := range groups {
		sort.Float64s(g.ms)
		g.row.P50MS, g.row.P95MS, g.row.MaxMS = quantile(g.ms, 0.5), quantile(g.ms, 0.95), g.ms[len(g.ms)-1]
		out = append(out, g.row)
	}
	sort.Slice(out, func(i, j int) bool { return summaryLess(out[i], out[j]) })
	return out, nil
}

// quantile interpolates the q-quantile of sorted values at q·(n-1), as
// ClickHouse's quantile() does on up to 8192 values.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}
