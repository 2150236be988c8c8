package analytics

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
)

// routed returns the rows of a routed event (inbound, a retried
// crm.deal.get, a delivery), a redelivery of it, another source's rejected
// request, and an old row outside a one-hour summary. Rows are whole
// seconds apart: both stores keep ts to the second on old servers.
func routed(now time.Time) (rows []hookgate.Exchange, eventID string) {
	eventID = hookgate.NewUUID()
	t0 := now.UTC().Truncate(time.Second).Add(-30 * time.Minute)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	x := func(ts time.Time, dir hookgate.Direction, src, op, outcome, code string, status, attempt uint16, ms float32) hookgate.Exchange {
		e := hookgate.Exchange{TS: ts, ExchangeID: hookgate.NewUUID(), EventID: eventID, Direction: dir, Source: src,
			Operation: op, HTTPMethod: "POST", Status: status, Outcome: outcome, Error: code, Attempt: attempt, DurationMS: ms}
		if dir == hookgate.Inbound {
			e.Provider, e.Event, e.URL = "bitrix24", "ONCRMDEALADD", "/webhook/"+src
		} else if op == "deliver" {
			e.Provider, e.URL = "http", "https://platform.example.com/hooks/deals"
		} else {
			e.Provider, e.URL = "bitrix24", "https://example.bitrix24.com/rest/1/[redacted]/"+op+".json"
		}
		return e
	}
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	defer func() {
		for i := range rows {
			if rows[i].EventID == eventID && rows[i].Outcome != "duplicate" {
				rows[i].TraceID = trace // the duplicate request had a trace of its own, not sampled
			}
		}
	}()
	rows = []hookgate.Exchange{
		// Out of order on purpose: the trace sorts.
		x(at(4), hookgate.Outbound, "deal-sync", "deliver", "ok", "", 200, 1, 40),
		x(at(0), hookgate.Inbound, "bitrix24-deals", "", "accepted", "", 200, 1, 3),
		x(at(1), hookgate.Outbound, "main", "crm.deal.get", "retry", "QUERY_LIMIT_EXCEEDED", 503, 1, 30),
		x(at(3), hookgate.Outbound, "main", "crm.deal.get", "ok", "", 200, 2, 120),
		x(at(2), hookgate.Inbound, "bitrix24-deals", "", "duplicate", "", 200, 1, 2),
	}
	other := x(at(5), hookgate.Inbound, "landing", "", "rejected", "invalid_token", 401, 1, 1)
	other.EventID, other.Provider = "", "apikey"
	old := x(now.UTC().Truncate(time.Second).Add(-3*time.Hour), hookgate.Inbound, "bitrix24-deals", "", "rejected", "invalid_token", 401, 1, 1)
	old.EventID = ""
	return append(rows, other, old), eventID
}

func write(t *testing.T, cfg config.History, dataDir string, rows []hookgate.Exchange) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg.BatchRows, cfg.FlushInterval = 100, config.Duration(time.Second)
	w, err := history.New(ctx, cfg, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rows {
		w.Record(x)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// sources returns the same rows behind both kinds of Source: the test
// environment's ClickHouse (a fresh database) and NDJSON files, each
// written by the history package's writer.
func sources(t *testing.T, rows []hookgate.Exchange) map[string]Source {
	t.Helper()
	addr := testenv.ClickHouse(t)
	database := testenv.ClickHouseDatabase(t, addr)
	write(t, config.History{ClickHouse: config.ClickHouse{Addr: []string{addr}, Database: database, Username: "default"}}, t.TempDir(), rows)
	ch := NewClickHouse(testenv.ClickHouseConn(t, addr), database)

	dataDir := t.TempDir()
	write(t, config.History{}, dataDir, rows)
	files, err := history.Files(filepath.Join(dataDir, "history"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no NDJSON history files written (%v)", err)
	}
	src, closeSrc, err := Open(config.History{}, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeSrc() })
	return map[string]Source{"clickhouse": ch, "ndjson": src}
}

var cmpExchange = cmp.Options{
	cmpopts.EquateApprox(0, 0.001),
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
}

func TestTraceAndSummary(t *testing.T) {
	now := time.Now()
	rows, eventID := routed(now)
	ctx := context.Background()
	for name, src := range sources(t, rows) {
		t.Run(name, func(t *testing.T) {
			got, err := Trace(ctx, src, eventID)
			if err != nil {
				t.Fatal(err)
			}
			// inbound, call retry, duplicate, call ok, delivery: by ts.
			want := []hookgate.Exchange{rows[1], rows[2], rows[4], rows[3], rows[0]}
			if diff := cmp.Diff(want, got, cmpExchange); diff != "" {
				t.Errorf("Trace (-want +got):\n%s", diff)
			}
			if _, err := Trace(ctx, src, "no-such-event"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Trace(unknown) error = %v; want ErrNotFound", err)
			}

			sum, err := Summary(ctx, src, "", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			t0 := rows[1].TS
			at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
			wantSum := []SummaryRow{
				{Direction: hookgate.Inbound, Source: "bitrix24-deals", Outcome: "accepted", Count: 1, P50MS: 3, P95MS: 3, MaxMS: 3, First: at(0), Last: at(0)},
				{Direction: hookgate.Inbound, Source: "bitrix24-deals", Outcome: "duplicate", Count: 1, P50MS: 2, P95MS: 2, MaxMS: 2, First: at(2), Last: at(2)},
				{Direction: hookgate.Inbound, Source: "landing", Outcome: "rejected", Count: 1, P50MS: 1, P95MS: 1, MaxMS: 1, LastError: "invalid_token", First: at(5), Last: at(5)},
				{Direction: hookgate.Outbound, Source: "deal-sync", Operation: "deliver", Outcome: "ok", Count: 1, P50MS: 40, P95MS: 40, MaxMS: 40, First: at(4), Last: at(4)},
				{Direction: hookgate.Outbound, Source: "main", Operation: "crm.deal.get", Outcome: "ok", Count: 1, P50MS: 120, P95MS: 120, MaxMS: 120, First: at(3), Last: at(3)},
				{Direction: hookgate.Outbound, Source: "main", Operation: "crm.deal.get", Outcome: "retry", Count: 1, P50MS: 30, P95MS: 30, MaxMS: 30, LastError: "QUERY_LIMIT_EXCEEDED", First: at(1), Last: at(1)},
			}
			if diff := cmp.Diff(wantSum, sum, cmpExchange); diff != "" {
				t.Errorf("Summary(all, 1h) (-want +got):\n%s", diff)
			}

			// One source, a longer window: the old rejection joins.
			sum, err = Summary(ctx, src, "bitrix24-deals", 4*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var got3 []string
			for _, r := range sum {
				got3 = append(got3, r.Source+"/"+r.Outcome)
			}
			if diff := cmp.Diff([]string{"bitrix24-deals/accepted", "bitrix24-deals/duplicate", "bitrix24-deals/rejected"}, got3); diff != "" {
				t.Errorf("Summary(bitrix24-deals, 4h) (-want +got):\n%s", diff)
			}

			var out bytes.Buffer
			if err := Run(ctx, src, []string{"--event-id", eventID}, &out); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 6 || !strings.HasPrefix(lines[0], "TIME (UTC)") {
				t.Fatalf("history --event-id printed:\n%s", out.String())
			}
			for i, want := range []string{"ONCRMDEALADD", "crm.deal.get", "duplicate", "crm.deal.get", "deliver"} {
				if !strings.Contains(lines[i+1], want) {
					t.Errorf("trace line %d = %q; want it to contain %q", i+1, lines[i+1], want)
				}
			}
			if f := strings.Fields(lines[1]); len(f) < 5 || f[2] != "inbound" || f[3] != "bitrix24-deals" {
				t.Errorf("trace line 1 = %q; want the inbound request of bitrix24-deals", lines[1])
			}
			for i, l := range lines[1:] {
				if f := strings.Fields(l); f[len(f)-1] != map[bool]string{true: "-", false: "4bf92f3577b34da6a3ce929d0e0e4736"}[i == 2] {
					t.Errorf("trace line %d = %q; want the trace id last (- for the duplicate)", i+1, l)
				}
			}
			if !strings.Contains(lines[2], "QUERY_LIMIT_EXCEEDED") || !strings.Contains(lines[2], "retry") {
				t.Errorf("trace line 2 = %q; want the retried call", lines[2])
			}
			out.Reset()
			if err := Run(ctx, src, []string{"--source", "main", "--since", "1h"}, &out); err != nil {
				t.Fatal(err)
			}
			lines = strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "DIRECTION") ||
				!strings.Contains(lines[1], "crm.deal.get") || !strings.Contains(lines[2], "QUERY_LIMIT_EXCEEDED") {
				t.Errorf("history --source main printed:\n%s", out.String())
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	src := NewFiles(t.TempDir())
	ctx := context.Background()
	for _, args := range [][]string{{"--nosuch"}, {"extra"}, {"--since", "-1h"}, {"--since", "soon"}} {
		if err := Run(ctx, src, args, &bytes.Buffer{}); err == nil {
			t.Errorf("Run(%q) = nil; want an error", args)
		}
	}
	var out bytes.Buffer
	if err := Run(ctx, src, nil, &out); err != nil || !strings.HasPrefix(out.String(), "DIRECTION") {
		t.Errorf("Run(no history) = %v, %q; want an empty table", err, out.String())
	}
}

func TestFilesTolerateAPartialLastLine(t *testing.T) {
	dir := t.TempDir()
	x := hookgate.Exchange{TS: time.Now().UTC().Truncate(time.Second), ExchangeID: hookgate.NewUUID(), EventID: "e1",
		Direction: hookgate.Inbound, Source: "s", Outcome: "accepted", Attempt: 1, DurationMS: 1.5}
	b, err := history.AppendJSONEachRow(nil, &x)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, `{"ts":"2026-01-01 00:00:00","event_id":"e1","dire`...)
	if err := os.WriteFile(filepath.Join(dir, "exchanges-20260101-0001.ndjson"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Trace(context.Background(), NewFiles(dir), "e1")
	if err != nil || len(got) != 1 || !got[0].TS.Equal(x.TS) || got[0].DurationMS != 1.5 {
		t.Errorf("Trace = %+v, %v; want the one whole row", got, err)
	}
	// A broken whole line is an error, with its place.
	b = append(b, "\n"...)
	os.WriteFile(filepath.Join(dir, "exchanges-20260101-0001.ndjson"), b, 0o644)
	if _, err := Trace(context.Background(), NewFiles(dir), "e1"); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("Trace over a broken line: %v; want an error naming line 2", err)
	}
}

func TestQuantileMatchesClickHouse(t *testing.T) {
	// ClickHouse: SELECT quantile(0.5)(number), quantile(0.95)(number) FROM numbers(10) = 4.5, 8.55
	vals := []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if got := quantile(vals, 0.5); got != 4.5 {
		t.Errorf("quantile(0.5) = %v; want 4.5", got)
	}
	if got := quantile(vals, 0.95); math.Abs(got-8.55) > 1e-9 {
		t.Errorf("quantile(0.95) = %v; want 8.55", got)
	}
}
