package analytics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/internal/testenv"
)

// TestBrowse runs the console's queries on the same rows in ClickHouse and
// in NDJSON files: both stores answer alike.
func TestBrowse(t *testing.T) {
	now := time.Now()
	rows, eventID := routed(now)
	ctx := context.Background()
	ids := func(xs []hookgate.Exchange) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.ExchangeID)
		}
		return out
	}
	for name, src := range sources(t, rows) {
		t.Run(name, func(t *testing.T) {
			b, ok := src.(Browser)
			if !ok {
				t.Fatalf("%T is not a Browser", src)
			}
			// rows by ts: 1 (inbound), 2, 4 (duplicate), 3, 0, 5 (other), 6 (old)
			for _, tc := range []struct {
				name string
				f    Filter
				want []string
			}{
				{"all, newest first", Filter{}, ids([]hookgate.Exchange{rows[5], rows[0], rows[3], rows[4], rows[2], rows[1], rows[6]})},
				{"page 2 of 3", Filter{Offset: 3, Limit: 3}, ids([]hookgate.Exchange{rows[4], rows[2], rows[1]})},
				{"past the end", Filter{Offset: 7, Limit: 3}, nil},
				{"source", Filter{Source: "main"}, ids([]hookgate.Exchange{rows[3], rows[2]})},
				{"operation as event", Filter{Event: "deliver"}, ids([]hookgate.Exchange{rows[0]})},
				{"event", Filter{Event: "ONCRMDEALADD", Outcome: "accepted"}, ids([]hookgate.Exchange{rows[1]})},
				{"status", Filter{Status: 401}, ids([]hookgate.Exchange{rows[5], rows[6]})},
				{"direction", Filter{Direction: hookgate.Outbound, Limit: 1}, ids([]hookgate.Exchange{rows[0]})},
				{"event id and outcome", Filter{EventID: eventID, Outcome: "retry"}, ids([]hookgate.Exchange{rows[2]})},
				{"time range", Filter{From: rows[1].TS.Add(time.Second), To: rows[0].TS}, ids([]hookgate.Exchange{rows[3], rows[4], rows[2]})},
				{"nothing", Filter{Source: "nope"}, nil},
			} {
				got, err := b.Search(ctx, tc.f)
				if err != nil {
					t.Fatalf("Search(%s): %v", tc.name, err)
				}
				if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
					t.Errorf("Search(%s) (-want +got):\n%s", tc.name, diff)
				}
			}
			if _, err := b.Search(ctx, Filter{Offset: MaxOffset + 1}); err == nil {
				t.Errorf("Search(offset past MaxOffset) = nil error; want one")
			}
			if _, err := b.Search(ctx, Filter{From: now, To: now.Add(-time.Hour)}); err == nil {
				t.Errorf("Search(empty range) = nil error; want one")
			}

			x, err := b.Exchange(ctx, rows[3].ExchangeID)
			if err != nil || x.Operation != "crm.deal.get" || x.Attempt != 2 || x.URL != rows[3].URL {
				t.Errorf("Exchange(%s) = %+v, %v; want the second crm.deal.get", rows[3].ExchangeID, x, err)
			}
			if _, err := b.Exchange(ctx, hookgate.NewUUID()); !errors.Is(err, ErrNotFound) {
				t.Errorf("Exchange(unknown) error = %v; want ErrNotFound", err)
			}

			pts, err := b.Series(ctx, now.Add(-time.Hour), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var total uint64
			for _, p := range pts {
				total += p.Count
			}
			if total != 6 {
				t.Errorf("Series(1h) counted %d rows in %v; want the 6 of the last hour", total, pts)
			}
			if _, err := b.Series(ctx, now, 0); err == nil {
				t.Errorf("Series(step 0) = nil error; want one")
			}
			rs, err := b.Reasons(ctx, now.Add(-4*time.Hour))
			want := []Reason{{Source: "bitrix24-deals", Error: "invalid_token", Count: 1}, {Source: "landing", Error: "invalid_token", Count: 1}}
			if err != nil || !cmp.Equal(want, rs) {
				t.Errorf("Reasons(4h) = %v, %v; want %v", rs, err, want)
			}
		})
	}
}

// TestNotYet: before the writer's first insert the database (or table)
// does not exist; the console says "no history yet" instead of failing.
func TestNotYet(t *testing.T) {
	addr := testenv.ClickHouse(t)
	conn := testenv.ClickHouseConn(t, addr)
	b := NewClickHouse(conn, "hookgate_never_created_"+strings.ReplaceAll(hookgate.NewUUID()[:8], "-", ""))
	_, err := b.Search(context.Background(), Filter{})
	if err == nil || !NotYet(err) {
		t.Errorf("Search on a missing database: %v; want an error NotYet reports", err)
	}
	if NotYet(errors.New("connection refused")) || NotYet(nil) {
		t.Errorf("NotYet of another error = true")
	}
}
