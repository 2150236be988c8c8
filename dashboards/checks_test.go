package dashboards

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
)

// table is a query's answer with normalised values: numbers float64,
// strings string, DateTime/DateTime64 time.Time (UTC).
type table struct {
	cols []string
	rows [][]any
}

func (tb *table) idx(t *testing.T, col string) int {
	t.Helper()
	for i, c := range tb.cols {
		if c == col {
			return i
		}
	}
	t.Fatalf("no column %q in %v", col, tb.cols)
	return -1
}

func (tb *table) str(t *testing.T, r int, col string) string {
	t.Helper()
	v := tb.rows[r][tb.idx(t, col)]
	s, ok := v.(string)
	if !ok {
		t.Fatalf("column %s row %d = %#v; want a string", col, r, v)
	}
	return s
}

func (tb *table) num(t *testing.T, r int, col string) float64 {
	t.Helper()
	v := tb.rows[r][tb.idx(t, col)]
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("column %s row %d = %#v; want a number", col, r, v)
	}
	return f
}

func (tb *table) time(t *testing.T, r int, col string) time.Time {
	t.Helper()
	v := tb.rows[r][tb.idx(t, col)]
	ts, ok := v.(time.Time)
	if !ok {
		t.Fatalf("column %s row %d = %#v; want a time", col, r, v)
	}
	return ts
}

// normalize turns a scanned or JSON value of ClickHouse type typ into the
// table's forms.
func normalize(typ string, v any) (any, error) {
	base := typ
	for _, wrap := range []string{"Nullable(", "LowCardinality("} {
		if strings.HasPrefix(base, wrap) {
			base = strings.TrimSuffix(strings.TrimPrefix(base, wrap), ")")
		}
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		return x.UTC(), nil
	case fmt.Stringer:
		if _, isTime := v.(time.Time); !isTime && !strings.HasPrefix(base, "Enum") {
			return x.String(), nil
		}
	}
	switch {
	case strings.HasPrefix(base, "DateTime"):
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s value %#v", typ, v)
		}
		for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05"} {
			if ts, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
				return ts, nil
			}
		}
		return nil, fmt.Errorf("%s value %q", typ, s)
	case strings.HasPrefix(base, "Int"), strings.HasPrefix(base, "UInt"), strings.HasPrefix(base, "Float"):
		if s, ok := v.(string); ok {
			return strconv.ParseFloat(s, 64)
		}
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return float64(rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return float64(rv.Uint()), nil
		case reflect.Float32:
			return float64(float32(rv.Float())), nil
		case reflect.Float64:
			return rv.Float(), nil
		}
		return nil, fmt.Errorf("%s value %#v", typ, v)
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	return fmt.Sprint(v), nil
}

// expect computes what a query must answer from the seeded rows.
type expect struct {
	rows     []hookgate.Exchange
	story    story
	ctx      Context
	now      time.Time
	interval int64 // seconds
}

func (e expect) inRange(x hookgate.Exchange) bool {
	ts := x.TS.Truncate(time.Second)
	return !ts.Before(e.ctx.From.Truncate(time.Second)) && !ts.After(e.ctx.To.Truncate(time.Second))
}

func (e expect) filtered(dir hookgate.Direction, varName string) []hookgate.Exchange {
	var out []hookgate.Exchange
	v := e.ctx.Vars[varName]
	for _, x := range e.rows {
		if x.Direction == dir && e.inRange(x) && (v == AllValue || x.Source == v) {
			out = append(out, x)
		}
	}
	return out
}

func (e expect) inbound() []hookgate.Exchange  { return e.filtered(hookgate.Inbound, "source") }
func (e expect) outbound() []hookgate.Exchange { return e.filtered(hookgate.Outbound, "portal") }

func (e expect) event(id string) []hookgate.Exchange {
	var out []hookgate.Exchange
	for _, x := range e.rows {
		if x.EventID == id {
			out = append(out, x)
		}
	}
	// ORDER BY ts, direction, operation = 'deliver', attempt
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.TS.Equal(b.TS) {
			return a.TS.Before(b.TS)
		}
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		if (a.Operation == "deliver") != (b.Operation == "deliver") {
			return b.Operation == "deliver"
		}
		return a.Attempt < b.Attempt
	})
	return out
}

func (e expect) bucket(ts time.Time) int64 { return ts.Unix() / e.interval * e.interval }

func unknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// counts sums the numeric column val of tb by the key columns (time as
// unix seconds).
func counts(t *testing.T, tb *table, val string, keys ...string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for r := range tb.rows {
		var parts []string
		for _, k := range keys {
			switch v := tb.rows[r][tb.idx(t, k)].(type) {
			case time.Time:
				parts = append(parts, strconv.FormatInt(v.Unix(), 10))
			default:
				parts = append(parts, fmt.Sprint(v))
			}
		}
		m[strings.Join(parts, "|")] += tb.num(t, r, val)
	}
	return m
}

func wantCounts(rows []hookgate.Exchange, key func(hookgate.Exchange) string) map[string]float64 {
	m := map[string]float64{}
	for _, x := range rows {
		m[key(x)]++
	}
	return m
}

func sameCounts(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the seed gives no rows to check; the check proves nothing", what)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// quantileBounds is the range a ClickHouse quantile(q) of the values may
// take: quantile() interpolates between the order statistics around
// q·(n-1); quantileExact would pick the one at ⌊q·n⌋.
func quantileBounds(vals []float64, q float64) (lo, hi float64) {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	n := len(s)
	pos := q * float64(n-1)
	lo, hi = s[int(math.Floor(pos))], s[int(math.Ceil(pos))]
	ex := s[min(int(q*float64(n)), n-1)]
	return min(lo, ex) - 0.01, max(hi, ex) + 0.01
}

func checkQuantiles(t *testing.T, tb *table, groups map[string][]float64, keys ...string) {
	t.Helper()
	if len(tb.rows) != len(groups) {
		t.Errorf("%d rows; want %d (one per %v): %v", len(tb.rows), len(groups), keys, tb.rows)
	}
	for r := range tb.rows {
		var parts []string
		for _, k := range keys {
			switch v := tb.rows[r][tb.idx(t, k)].(type) {
			case time.Time:
				parts = append(parts, strconv.FormatInt(v.Unix(), 10))
			default:
				parts = append(parts, fmt.Sprint(v))
			}
		}
		key := strings.Join(parts, "|")
		vals, ok := groups[key]
		if !ok {
			t.Errorf("unexpected group %s", key)
			continue
		}
		prev := -1.0
		for _, q := range []struct {
			col string
			q   float64
		}{{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}} {
			got := tb.num(t, r, q.col)
			lo, hi := quantileBounds(vals, q.q)
			if got < lo || got > hi {
				t.Errorf("%s %s = %v; want in [%v, %v] (values %v)", key, q.col, got, lo, hi, vals)
			}
			if got < prev {
				t.Errorf("%s %s = %v < the lower percentile %v", key, q.col, got, prev)
			}
			prev = got
		}
	}
}

// qcase is one query to run, with its check.
type qcase struct {
	name  string // dashboard uid/panel title, uid/$variable, or query:<file>
	sql   string // expanded
	check func(t *testing.T, tb *table)
}

// panelChecks returns the check of every dashboard panel and variable, by
// name; a panel without a check fails the test.
func (e expect) checks() map[string]func(t *testing.T, tb *table) {
	vars := e.ctx.Vars
	return map[string]func(t *testing.T, tb *table){
		// Inbound traffic.
		"hookgate-inbound/$source": func(t *testing.T, tb *table) {
			set := map[string]bool{}
			for _, x := range e.rows {
				if x.Direction == hookgate.Inbound && e.inRange(x) && x.Source != "" {
					set[x.Source] = true
				}
			}
			e.checkList(t, tb, "source", set, true)
		},
		"hookgate-inbound/Requests by source and outcome": func(t *testing.T, tb *table) {
			sameCounts(t, "requests by time|source|outcome", counts(t, tb, "requests", "time", "source_id", "outcome"),
				wantCounts(e.inbound(), func(x hookgate.Exchange) string {
					return fmt.Sprintf("%d|%s|%s", e.bucket(x.TS), unknown(x.Source), x.Outcome)
				}))
		},
		"hookgate-inbound/Duplicate rate": func(t *testing.T, tb *table) {
			var dup, acc float64
			for _, x := range e.inbound() {
				switch x.Outcome {
				case hookgate.OutcomeDuplicate:
					dup++
				case hookgate.OutcomeAccepted:
					acc++
				}
			}
			if len(tb.rows) != 1 {
				t.Fatalf("%d rows; want 1", len(tb.rows))
			}
			want := dup / math.Max(acc+dup, 1)
			if got := tb.num(t, 0, "duplicate_rate"); math.Abs(got-want) > 1e-9 {
				t.Errorf("duplicate_rate = %v; want %v (%v duplicates, %v accepted)", got, want, dup, acc)
			}
		},
		"hookgate-inbound/Rejections by error code": func(t *testing.T, tb *table) {
			var rej []hookgate.Exchange
			for _, x := range e.inbound() {
				if x.Outcome == hookgate.OutcomeRejected {
					rej = append(rej, x)
				}
			}
			sameCounts(t, "rejections by time|error", counts(t, tb, "rejections", "time", "error"),
				wantCounts(rej, func(x hookgate.Exchange) string { return fmt.Sprintf("%d|%s", e.bucket(x.TS), x.Error) }))
		},
		"hookgate-inbound/Answer time (p50, p95, p99)": func(t *testing.T, tb *table) {
			groups := map[string][]float64{}
			for _, x := range e.inbound() {
				k := strconv.FormatInt(e.bucket(x.TS), 10)
				groups[k] = append(groups[k], float64(x.DurationMS))
			}
			checkQuantiles(t, tb, groups, "time")
		},
		"hookgate-inbound/Top sources": func(t *testing.T, tb *table) {
			type row struct {
				src                string
				req, acc, dup, rej float64
			}
			m := map[string]*row{}
			for _, x := range e.inbound() {
				r := m[unknown(x.Source)]
				if r == nil {
					r = &row{src: unknown(x.Source)}
					m[r.src] = r
				}
				r.req++
				switch x.Outcome {
				case hookgate.OutcomeAccepted:
					r.acc++
				case hookgate.OutcomeDuplicate:
					r.dup++
				case hookgate.OutcomeRejected:
					r.rej++
				}
			}
			var want [][]any
			for _, r := range m {
				want = append(want, []any{r.src, r.req, r.acc, r.dup, r.rej, math.Round(r.rej/r.req*1e4) / 1e4})
			}
			sort.Slice(want, func(i, j int) bool {
				if want[i][1].(float64) != want[j][1].(float64) {
					return want[i][1].(float64) > want[j][1].(float64)
				}
				return want[i][0].(string) < want[j][0].(string)
			})
			var got [][]any
			for r := range tb.rows {
				got = append(got, []any{tb.str(t, r, "source_id"), tb.num(t, r, "requests"), tb.num(t, r, "accepted"),
					tb.num(t, r, "duplicates"), tb.num(t, r, "rejected"), tb.num(t, r, "rejection_rate")})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("top sources (-want +got):\n%s", diff)
			}
		},

		// Outbound calls and deliveries.
		"hookgate-outbound/$portal": func(t *testing.T, tb *table) {
			set := map[string]bool{}
			for _, x := range e.rows {
				if x.Direction == hookgate.Outbound && e.inRange(x) {
					set[x.Source] = true
				}
			}
			e.checkList(t, tb, "source", set, true)
		},
		"hookgate-outbound/Calls by portal, operation and outcome": func(t *testing.T, tb *table) {
			sameCounts(t, "attempts by time|portal|operation|outcome", counts(t, tb, "attempts", "time", "portal", "operation", "outcome"),
				wantCounts(e.outbound(), func(x hookgate.Exchange) string {
					return fmt.Sprintf("%d|%s|%s|%s", e.bucket(x.TS), x.Source, x.Operation, x.Outcome)
				}))
		},
		"hookgate-outbound/Dead letters": func(t *testing.T, tb *table) {
			var n float64
			for _, x := range e.outbound() {
				if x.Outcome == hookgate.OutcomeDead {
					n++
				}
			}
			if len(tb.rows) != 1 || tb.num(t, 0, "dead") != n {
				t.Errorf("dead = %v; want [[%v]]", tb.rows, n)
			}
		},
		"hookgate-outbound/Attempts by portal, operation and outcome": func(t *testing.T, tb *table) {
			sameCounts(t, "attempts by portal|operation|outcome", counts(t, tb, "attempts", "portal", "operation", "outcome"),
				wantCounts(e.outbound(), func(x hookgate.Exchange) string {
					return fmt.Sprintf("%s|%s|%s", x.Source, x.Operation, x.Outcome)
				}))
			sums := map[string]float64{}
			for _, x := range e.outbound() {
				sums[fmt.Sprintf("%s|%s|%s", x.Source, x.Operation, x.Outcome)] += float64(x.DurationMS)
			}
			n := counts(t, tb, "attempts", "portal", "operation", "outcome")
			for r := range tb.rows {
				k := fmt.Sprintf("%s|%s|%s", tb.str(t, r, "portal"), tb.str(t, r, "operation"), tb.str(t, r, "outcome"))
				want := math.Round(sums[k]/n[k]*10) / 10
				if got := tb.num(t, r, "avg_ms"); math.Abs(got-want) > 0.051 {
					t.Errorf("%s avg_ms = %v; want %v", k, got, want)
				}
			}
		},
		"hookgate-outbound/Latency percentiles by operation": func(t *testing.T, tb *table) {
			groups := map[string][]float64{}
			for _, x := range e.outbound() {
				k := fmt.Sprintf("%d|%s", e.bucket(x.TS), x.Operation)
				groups[k] = append(groups[k], float64(x.DurationMS))
			}
			checkQuantiles(t, tb, groups, "time", "operation")
		},
		"hookgate-outbound/Retries per attempt number": func(t *testing.T, tb *table) {
			m := map[string]map[string]float64{}
			for _, x := range e.outbound() {
				k := strconv.Itoa(int(x.Attempt))
				if m[k] == nil {
					m[k] = map[string]float64{"ok": 0, "retry": 0, "failed": 0, "dead": 0, "suppressed": 0}
				}
				m[k][x.Outcome]++
			}
			got := map[string]map[string]float64{}
			last := 0.0
			for r := range tb.rows {
				k := tb.str(t, r, "attempt_no")
				n, _ := strconv.ParseFloat(k, 64)
				if n <= last {
					t.Errorf("attempt_no %s after %v: not in ascending order", k, last)
				}
				last = n
				got[k] = map[string]float64{}
				for _, c := range []string{"ok", "retry", "failed", "dead", "suppressed"} {
					got[k][c] = tb.num(t, r, c)
				}
			}
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("outcomes by attempt (-want +got):\n%s", diff)
			}
		},
		"hookgate-outbound/Breaker open and rate-limit answers": func(t *testing.T, tb *table) {
			var limited []hookgate.Exchange
			for _, x := range e.outbound() {
				switch x.Error {
				case "circuit_open", "QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT":
					limited = append(limited, x)
				}
			}
			sameCounts(t, "answers by time|portal|error", counts(t, tb, "answers", "time", "portal", "error"),
				wantCounts(limited, func(x hookgate.Exchange) string {
					return fmt.Sprintf("%d|%s|%s", e.bucket(x.TS), x.Source, x.Error)
				}))
		},
		"hookgate-outbound/Dead-lettered jobs": func(t *testing.T, tb *table) {
			var want [][]any
			for _, x := range e.outbound() {
				if x.Outcome == hookgate.OutcomeDead {
					want = append(want, []any{x.TS.Unix(), x.EventID, x.Source, x.Operation, float64(x.Attempt), float64(x.Status), x.Error})
				}
			}
			sort.SliceStable(want, func(i, j int) bool { return want[i][0].(int64) > want[j][0].(int64) })
			var got [][]any
			for r := range tb.rows {
				got = append(got, []any{tb.time(t, r, "time").Unix(), tb.str(t, r, "event_id"), tb.str(t, r, "portal"),
					tb.str(t, r, "operation"), tb.num(t, r, "attempt"), tb.num(t, r, "status"), tb.str(t, r, "error")})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("dead letters (-want +got):\n%s", diff)
			}
		},

		// Event trace.
		"hookgate-trace/$event_id": func(t *testing.T, tb *table) {
			set := map[string]bool{}
			for _, x := range e.rows {
				if e.inRange(x) && x.EventID != "" {
					set[x.EventID] = true
				}
			}
			e.checkList(t, tb, "event_id", set, false)
		},
		"hookgate-trace/Event summary": func(t *testing.T, tb *table) {
			rows := e.event(vars["event_id"])
			var in, calls, del, ok, dead float64
			for _, x := range rows {
				switch {
				case x.Direction == hookgate.Inbound:
					in++
				case x.Operation == "deliver":
					del++
					if x.Outcome == hookgate.OutcomeOK {
						ok++
					}
				default:
					calls++
				}
				if x.Outcome == hookgate.OutcomeDead {
					dead++
				}
			}
			if len(tb.rows) != 1 {
				t.Fatalf("%d rows; want 1", len(tb.rows))
			}
			got := []any{tb.time(t, 0, "first_seen").Unix(), tb.time(t, 0, "last_seen").Unix(), tb.num(t, 0, "exchanges"),
				tb.num(t, 0, "inbound"), tb.num(t, 0, "calls"), tb.num(t, 0, "delivery_attempts"), tb.num(t, 0, "delivered"), tb.num(t, 0, "dead")}
			want := []any{rows[0].TS.Unix(), rows[len(rows)-1].TS.Unix(), float64(len(rows)), in, calls, del, ok, dead}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("event summary (-want +got):\n%s", diff)
			}
		},
		"hookgate-trace/Trace": func(t *testing.T, tb *table) {
			e.checkTrace(t, tb, func(x hookgate.Exchange) []any {
				return []any{x.ExchangeID, x.TS.Unix(), x.Direction.String(), x.Source, x.Operation, x.Outcome, x.Error, float64(x.Attempt), float64(x.Status)}
			}, func(r int) []any {
				return []any{tb.str(t, r, "exchange_id"), tb.time(t, r, "ts").Unix(), tb.str(t, r, "direction"), tb.str(t, r, "source"),
					tb.str(t, r, "operation"), tb.str(t, r, "outcome"), tb.str(t, r, "error"), tb.num(t, r, "attempt"), tb.num(t, r, "status")}
			})
		},
		"hookgate-trace/Bodies": func(t *testing.T, tb *table) {
			e.checkTrace(t, tb, func(x hookgate.Exchange) []any {
				return []any{x.TS.Unix(), x.Direction.String(), x.Operation, float64(x.Attempt), x.RequestHeaders, x.RequestBody, x.ResponseBody}
			}, func(r int) []any {
				return []any{tb.time(t, r, "ts").Unix(), tb.str(t, r, "direction"), tb.str(t, r, "operation"), tb.num(t, r, "attempt"),
					tb.str(t, r, "request_headers"), tb.str(t, r, "request_body"), tb.str(t, r, "response_body")}
			})
		},
	}
}

func (e expect) checkList(t *testing.T, tb *table, col string, want map[string]bool, sorted bool) {
	t.Helper()
	got := map[string]bool{}
	var order []string
	for r := range tb.rows {
		s := tb.str(t, r, col)
		got[s] = true
		order = append(order, s)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if len(order) != len(got) {
		t.Errorf("values repeat: %v", order)
	}
	if sorted && !sort.StringsAreSorted(order) {
		t.Errorf("values not sorted: %v", order)
	}
}

func (e expect) checkTrace(t *testing.T, tb *table, want func(hookgate.Exchange) []any, got func(r int) []any) {
	t.Helper()
	rows := e.event(e.ctx.Vars["event_id"])
	if len(rows) < 3 {
		t.Fatalf("the traced event has %d rows in the seed; want an inbound, a call and a delivery", len(rows))
	}
	var w, g [][]any
	for _, x := range rows {
		w = append(w, want(x))
	}
	for r := range tb.rows {
		g = append(g, got(r))
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("trace of %s (-want +got):\n%s", e.ctx.Vars["event_id"], diff)
	}
}

// libraryChecks are the checks of dashboards/queries, by file name.
func (e expect) libraryChecks() map[string]func(t *testing.T, tb *table) {
	within := func(x hookgate.Exchange, d time.Duration) bool { return !x.TS.Before(e.now.Add(-d)) }
	return map[string]func(t *testing.T, tb *table){
		"failed_deliveries_24h": func(t *testing.T, tb *table) {
			type job struct{ last hookgate.Exchange }
			jobs := map[string]*job{}
			var keys []string
			for _, x := range e.rows {
				if x.Direction != hookgate.Outbound || x.Operation != "deliver" || !within(x, 24*time.Hour) {
					continue
				}
				k := x.EventID + "|" + x.Source
				if jobs[k] == nil {
					jobs[k] = &job{}
					keys = append(keys, k)
				}
				if !x.TS.Before(jobs[k].last.TS) {
					jobs[k].last = x
				}
			}
			var want [][]any
			for _, k := range keys {
				l := jobs[k].last
				if l.Outcome == hookgate.OutcomeFailed || l.Outcome == hookgate.OutcomeDead {
					want = append(want, []any{l.EventID, l.Source, l.Outcome, l.Error, float64(l.Status), float64(l.Attempt), l.TS.Unix()})
				}
			}
			sort.SliceStable(want, func(i, j int) bool { return want[i][6].(int64) > want[j][6].(int64) })
			if len(want) != 2 || want[0][0] != e.story.Failed || want[1][0] != e.story.Dead {
				t.Fatalf("seed: want the failed E5 and the dead E3 deliveries, computed %v", want)
			}
			var got [][]any
			for r := range tb.rows {
				got = append(got, []any{tb.str(t, r, "event_id"), tb.str(t, r, "destination"), tb.str(t, r, "final_outcome"),
					tb.str(t, r, "last_error"), tb.num(t, r, "last_status"), tb.num(t, r, "attempts"), tb.time(t, r, "last_attempt_at").Unix()})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("failed deliveries (-want +got):\n%s", diff)
			}
		},
		"slowest_rest_methods": func(t *testing.T, tb *table) {
			groups := map[string][]float64{}
			notOK := map[string]float64{}
			for _, x := range e.rows {
				if x.Direction == hookgate.Outbound && x.Operation != "deliver" && x.Operation != "" && x.Status > 0 && within(x, 7*24*time.Hour) {
					k := x.Source + "|" + x.Operation
					groups[k] = append(groups[k], float64(x.DurationMS))
					if x.Outcome != hookgate.OutcomeOK {
						notOK[k]++
					}
				}
			}
			if len(tb.rows) != len(groups) {
				t.Fatalf("%d rows; want %d: %v", len(tb.rows), len(groups), tb.rows)
			}
			prev := math.Inf(1)
			for r := range tb.rows {
				k := tb.str(t, r, "portal") + "|" + tb.str(t, r, "method")
				vals := groups[k]
				if vals == nil {
					t.Errorf("unexpected method %s", k)
					continue
				}
				mx := 0.0
				for _, v := range vals {
					mx = math.Max(mx, v)
				}
				if got := tb.num(t, r, "attempts"); got != float64(len(vals)) {
					t.Errorf("%s attempts = %v; want %d", k, got, len(vals))
				}
				if got := tb.num(t, r, "max_ms"); math.Abs(got-mx) > 0.051 {
					t.Errorf("%s max_ms = %v; want %v", k, got, mx)
				}
				if got := tb.num(t, r, "not_ok"); got != notOK[k] {
					t.Errorf("%s not_ok = %v; want %v", k, got, notOK[k])
				}
				p95 := tb.num(t, r, "p95_ms")
				if lo, hi := quantileBounds(vals, 0.95); p95 < lo-0.05 || p95 > hi+0.05 {
					t.Errorf("%s p95_ms = %v; want in [%v, %v]", k, p95, lo, hi)
				}
				if p95 > prev {
					t.Errorf("%s p95_ms %v after %v: not slowest first", k, p95, prev)
				}
				prev = p95
			}
			if tb.str(t, 0, "method") != "crm.lead.add" {
				t.Errorf("slowest method = %s; want crm.lead.add (300 ms)", tb.str(t, 0, "method"))
			}
		},
		"rising_rejection_rates": func(t *testing.T, tb *table) {
			type rate struct{ rreq, rrej, breq, brej float64 }
			m := map[string]*rate{}
			for _, x := range e.rows {
				if x.Direction != hookgate.Inbound || !within(x, 8*24*time.Hour) {
					continue
				}
				k := unknown(x.Source)
				if m[k] == nil {
					m[k] = &rate{}
				}
				rej := 0.0
				if x.Outcome == hookgate.OutcomeRejected {
					rej = 1
				}
				if within(x, 24*time.Hour) {
					m[k].rreq++
					m[k].rrej += rej
				} else {
					m[k].breq++
					m[k].brej += rej
				}
			}
			r4 := func(f float64) float64 { return math.Round(f*1e4) / 1e4 }
			var want [][]any
			for k, r := range m {
				rr, br := r4(r.rrej/math.Max(r.rreq, 1)), r4(r.brej/math.Max(r.breq, 1))
				if r.rrej >= 3 && rr >= 2*br {
					want = append(want, []any{k, r.rreq, r.rrej, r.breq, r.brej, rr, br})
				}
			}
			if len(want) != 1 || want[0][0] != "landing" {
				t.Fatalf("seed: want only landing rising, computed %v", want)
			}
			var got [][]any
			for r := range tb.rows {
				got = append(got, []any{tb.str(t, r, "source_id"), tb.num(t, r, "recent_requests"), tb.num(t, r, "recent_rejected"),
					tb.num(t, r, "baseline_requests"), tb.num(t, r, "baseline_rejected"), tb.num(t, r, "recent_rate"), tb.num(t, r, "baseline_rate")})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rising rejection rates (-want +got):\n%s", diff)
			}
		},
		"undelivered_events": func(t *testing.T, tb *table) {
			type ev struct {
				in                      hookgate.Exchange
				accepted                bool
				out, calls, dels, okDel int
				dead, failed            bool
				last                    hookgate.Exchange
			}
			m := map[string]*ev{}
			for _, x := range e.rows {
				if x.EventID == "" || !within(x, 7*24*time.Hour) {
					continue
				}
				v := m[x.EventID]
				if v == nil {
					v = &ev{}
					m[x.EventID] = v
				}
				if x.Direction == hookgate.Inbound {
					if v.in.TS.IsZero() || x.TS.Before(v.in.TS) {
						v.in = x
					}
					v.accepted = v.accepted || x.Outcome == hookgate.OutcomeAccepted
					continue
				}
				v.out++
				if x.Operation == "deliver" {
					v.dels++
					if x.Outcome == hookgate.OutcomeOK || x.Outcome == hookgate.OutcomeSuppressed {
						v.okDel++ // a suppressed echo needs no delivery
					}
				} else {
					v.calls++
				}
				v.dead = v.dead || x.Outcome == hookgate.OutcomeDead
				v.failed = v.failed || x.Outcome == hookgate.OutcomeFailed
				if !x.TS.Before(v.last.TS) {
					v.last = x
				}
			}
			var want [][]any
			for id, v := range m {
				if !v.accepted || v.out == 0 || v.okDel > 0 {
					continue
				}
				state := "not delivered"
				switch {
				case v.dead:
					state = "dead"
				case v.failed:
					state = "failed"
				case v.last.Outcome == hookgate.OutcomeRetry:
					state = "retrying"
				}
				want = append(want, []any{id, v.in.Source, v.in.Event, v.in.TS.Unix(), float64(v.calls), float64(v.dels),
					v.last.Operation, v.last.Outcome, v.last.Error, state})
			}
			sort.Slice(want, func(i, j int) bool { return want[i][3].(int64) < want[j][3].(int64) })
			if len(want) != 3 || want[0][0] != e.story.Dead || want[1][0] != e.story.Retrying || want[2][0] != e.story.Failed {
				t.Fatalf("seed: want E3 dead, E4 retrying, E5 failed; computed %v", want)
			}
			var got [][]any
			for r := range tb.rows {
				got = append(got, []any{tb.str(t, r, "event_id"), tb.str(t, r, "source_id"), tb.str(t, r, "event_name"),
					tb.time(t, r, "received_at").Unix(), tb.num(t, r, "calls"), tb.num(t, r, "delivery_attempts"),
					tb.str(t, r, "last_operation"), tb.str(t, r, "last_outcome"), tb.str(t, r, "last_error"), tb.str(t, r, "state")})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("undelivered events (-want +got):\n%s", diff)
			}
		},
	}
}

// cases expands every dashboard panel target and variable query, and every
// library query, for database, with their checks. Every query must have a
// check.
func (e expect) cases(t *testing.T, database string) []qcase {
	t.Helper()
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	checks := e.checks()
	used := map[string]bool{}
	var out []qcase
	add := func(name, raw string, check func(*testing.T, *table)) {
		used[name] = true
		if check == nil {
			t.Errorf("%s: no check for this query; add one to checks_test.go", name)
			return
		}
		sql, err := Expand(raw, e.ctx)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		out = append(out, qcase{name: name, sql: sql, check: check})
	}
	for _, d := range ds {
		for _, v := range d.Templating.List {
			if sql := v.SQL(); sql != "" {
				name := d.UID + "/$" + v.Name
				add(name, sql, checks[name])
			}
		}
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				name := d.UID + "/" + p.Title
				if len(p.Targets) > 1 {
					name += "/" + tg.RefID
				}
				add(name, tg.RawSQL, checks[name])
			}
		}
	}
	for name := range checks {
		if !used[name] {
			t.Errorf("check %q has no dashboard query", name)
		}
	}
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	lib := e.libraryChecks()
	for _, q := range qs {
		name := "query:" + q.Name
		check := lib[q.Name]
		if check == nil {
			t.Errorf("%s: no check for this query; add one to libraryChecks", name)
			continue
		}
		out = append(out, qcase{name: name, sql: ForDatabase(q.SQL, database), check: check})
	}
	return out
}
