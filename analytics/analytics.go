// Package analytics reads webhook history back for people: the trace of
// one event (its inbound request, the route's calls and deliveries, in
// order) and a summary of a source's traffic. It is the logic of
// `hookgate history`; it reads the ClickHouse table or, with no ClickHouse
// configured, the NDJSON files the history package writes under
// data_dir/history.
package analytics

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/history"
)

// ErrNotFound is returned by Trace when no row carries the event id.
var ErrNotFound = errors.New("analytics: no exchanges for this event")

// Source is where history is read from: ClickHouse or NDJSON files.
type Source interface {
	// Trace returns every row of the event, in trace order (TraceLess).
	Trace(ctx context.Context, eventID string) ([]hookgate.Exchange, error)
	// Summary aggregates the rows with ts >= since (and source, when not
	// empty) into SummaryRows, in summary order.
	Summary(ctx context.Context, source string, since time.Time) ([]SummaryRow, error)
}

// SummaryRow is one line of a summary: the exchanges of one direction,
// source, operation and outcome.
type SummaryRow struct {
	Direction hookgate.Direction
	Source    string // inbound source id, or portal / delivery destination
	Operation string // REST method or "deliver"; empty for inbound
	Outcome   string
	Count     uint64
	// P50MS and P95MS are percentiles of duration_ms, interpolated between
	// the nearest values (ClickHouse's quantile(); an estimate there on
	// more than 8192 rows). MaxMS is the largest.
	P50MS, P95MS, MaxMS float64
	LastError           string    // error of the latest row that had one
	First, Last         time.Time // ts of the first and last row
}

// TraceLess orders a trace: by ts, inbound before outbound, calls before
// deliveries, then by attempt. The dashboards' trace uses the same order.
func TraceLess(a, b hookgate.Exchange) bool {
	if !a.TS.Equal(b.TS) {
		return a.TS.Before(b.TS)
	}
	if a.Direction != b.Direction {
		return a.Direction < b.Direction
	}
	if ad, bd := a.Operation == "deliver", b.Operation == "deliver"; ad != bd {
		return bd
	}
	return a.Attempt < b.Attempt
}

func summaryLess(a, b SummaryRow) bool {
	if a.Direction != b.Direction {
		return a.Direction < b.Direction
	}
	if a.Source != b.Source {
		return a.Source < b.Source
	}
	if a.Operation != b.Operation {
		return a.Operation < b.Operation
	}
	return a.Outcome < b.Outcome
}

// Trace returns the rows of event eventID in trace order, or ErrNotFound.
func Trace(ctx context.Context, src Source, eventID string) ([]hookgate.Exchange, error) {
	if eventID == "" {
		return nil, errors.New("analytics: empty event id")
	}
	rows, err := src.Trace(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, eventID)
	}
	sort.SliceStable(rows, func(i, j int) bool { return TraceLess(rows[i], rows[j]) })
	return rows, nil
}

// Summary returns the summary of the last since of history (whole
// seconds), for one source or, with source "", for all.
func Summary(ctx context.Context, src Source, source string, since time.Duration) ([]SummaryRow, error) {
	if since <= 0 {
		return nil, fmt.Errorf("analytics: since must be positive, got %v", since)
	}
	rows, err := src.Summary(ctx, source, time.Now().Add(-since).Truncate(time.Second))
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return summaryLess(rows[i], rows[j]) })
	return rows, nil
}

const timeLayout = "2006-01-02 15:04:05.000"

func ms(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// PrintTrace writes rows as a table, one line per exchange.
func PrintTrace(w io.Writer, rows []hookgate.Exchange) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tDIRECTION\tSOURCE\tEVENT/OPERATION\tATTEMPT\tSTATUS\tOUTCOME\tERROR\tMS\tTRACE")
	for _, x := range rows {
		what := x.Operation
		if x.Direction == hookgate.Inbound {
			what = x.Event
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n",
			x.TS.UTC().Format(timeLayout), x.Direction, dash(x.Source), dash(what), x.Attempt, x.Status,
			x.Outcome, dash(x.Error), ms(float64(x.DurationMS)), dash(x.TraceID))
	}
	return tw.Flush()
}

// PrintSummary writes rows as a table, one line per group.
func PrintSummary(w io.Writer, rows []SummaryRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIRECTION\tSOURCE\tOPERATION\tOUTCOME\tCOUNT\tP50 MS\tP95 MS\tMAX MS\tLAST ERROR\tLAST (UTC)")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			r.Direction, dash(r.Source), dash(r.Operation), r.Outcome, r.Count,
			ms(r.P50MS), ms(r.P95MS), ms(r.MaxMS), dash(r.LastError), r.Last.UTC().Format(timeLayout))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Open returns the Source for a history config: ClickHouse when
// history.clickhouse.addr is set (password is the resolved secret), else
// the NDJSON files under dataDir/history. Call close when done.
func Open(cfg config.History, dataDir, password string) (src Source, close func() error, err error) {
	if len(cfg.ClickHouse.Addr) == 0 {
		return NewFiles(filepath.Join(dataDir, "history")), func() error { return nil }, nil
	}
	conn, err := history.Open(cfg, password)
	if err != nil {
		return nil, nil, err
	}
	return NewClickHouse(conn, cfg.ClickHouse.Database), conn.Close, nil
}

// Run is `hookgate history`:
//
//	hookgate history --event-id ID          the event's trace
//	hookgate history [--source S] [--since 1h]   a summary table
//
// It writes the table to stdout.
func Run(ctx context.Context, src Source, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	eventID := fs.String("event-id", "", "print the trace of this event")
	source := fs.String("source", "", "summarise this source only (inbound source id, portal or destination)")
	since := fs.Duration("since", time.Hour, "summarise the history of this last period")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("history: %w (usage: history --event-id ID | history [--source S] [--since 1h])", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("history: unexpected arguments %q", fs.Args())
	}
	if *eventID != "" {
		rows, err := Trace(ctx, src, *eventID)
		if err != nil {
			return err
		}
		return PrintTrace(stdout, rows)
	}
	rows, err := Summary(ctx, src, *source, *since)
	if err != nil {
		return err
	}
	return PrintSummary(stdout, rows)
}
