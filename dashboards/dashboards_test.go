package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
)

func TestDashboardModels(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	wantUIDs := map[string]bool{"hookgate-inbound": true, "hookgate-outbound": true, "hookgate-trace": true}
	seen := map[string]bool{}
	for _, d := range ds {
		t.Run(d.File, func(t *testing.T) {
			if d.UID == "" || d.Title == "" {
				t.Errorf("uid %q, title %q; want both", d.UID, d.Title)
			}
			if seen[d.UID] {
				t.Errorf("uid %s used twice", d.UID)
			}
			seen[d.UID] = true
			panels := d.AllPanels()
			if len(panels) == 0 {
				t.Fatal("no panels")
			}
			ids := map[int]bool{}
			for _, p := range panels {
				if p.Type == "row" {
					continue
				}
				if ids[p.ID] {
					t.Errorf("panel id %d used twice", p.ID)
				}
				ids[p.ID] = true
				if p.Title == "" {
					t.Errorf("panel %d has no title", p.ID)
				}
				if p.Datasource == nil || p.Datasource.Type != PluginType || p.Datasource.UID != DatasourceUID {
					t.Errorf("panel %q datasource = %+v; want %s %s", p.Title, p.Datasource, PluginType, DatasourceUID)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				for _, tg := range p.Targets {
					if tg.Datasource == nil || tg.Datasource.Type != PluginType {
						t.Errorf("panel %q target %s datasource = %+v; want %s", p.Title, tg.RefID, tg.Datasource, PluginType)
					}
					if tg.EditorType != "sql" || strings.TrimSpace(tg.RawSQL) == "" {
						t.Errorf("panel %q target %s: editorType %q, rawSql %q; want SQL", p.Title, tg.RefID, tg.EditorType, tg.RawSQL)
					}
					if tg.QueryType != "table" && tg.QueryType != "timeSeries" {
						t.Errorf("panel %q target %s queryType = %q", p.Title, tg.RefID, tg.QueryType)
					}
					if !strings.Contains(tg.RawSQL, "${database}.exchanges") {
						t.Errorf("panel %q does not read ${database}.exchanges", p.Title)
					}
					if tg.QueryType == "timeSeries" && !strings.Contains(tg.RawSQL, "$__timeFilter(ts)") {
						t.Errorf("time series %q does not use $__timeFilter(ts)", p.Title)
					}
					// toStartOfInterval, what $__timeInterval expands to, is
					// missing from ClickHouse 18.16.
					if strings.Contains(tg.RawSQL, "$__timeInterval") {
						t.Errorf("panel %q uses $__timeInterval: ClickHouse 18.16 has no toStartOfInterval; bucket with $__interval_s", p.Title)
					}
				}
			}
			vars := map[string]Variable{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
				if v.Type == "query" && (v.Datasource == nil || v.Datasource.Type != PluginType || v.SQL() == "") {
					t.Errorf("variable %s: datasource %+v, sql %q", v.Name, v.Datasource, v.SQL())
				}
			}
			if v := vars["database"]; v.Type != "constant" || v.Value() != "hookgate" {
				t.Errorf("variable database = %+v; want a constant hookgate", v)
			}
			for name, v := range map[string]string{"hookgate-inbound": "source", "hookgate-outbound": "portal", "hookgate-trace": "event_id"} {
				if name != d.UID {
					continue
				}
				if _, ok := vars[v]; !ok {
					t.Errorf("no variable %s", v)
				}
				if v != "event_id" && (!vars[v].IncludeAll || vars[v].AllValue != AllValue) {
					t.Errorf("variable %s: includeAll %v allValue %q; want true %q", v, vars[v].IncludeAll, vars[v].AllValue, AllValue)
				}
			}
		})
	}
	if !reflect.DeepEqual(seen, wantUIDs) {
		t.Errorf("dashboards %v; want %v", seen, wantUIDs)
	}
}

func TestProvisioning(t *testing.T) {
	ds, err := Files.ReadFile("grafana/provisioning/datasources/hookgate-clickhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: " + PluginType, "uid: " + DatasourceUID, "${CLICKHOUSE_HOST}", "${CLICKHOUSE_PORT}",
		"${CLICKHOUSE_USER}", "${CLICKHOUSE_PASSWORD}", "${CLICKHOUSE_DATABASE}", "protocol: native"} {
		if !strings.Contains(string(ds), want) {
			t.Errorf("datasource provisioning lacks %q", want)
		}
	}
	pr, err := Files.ReadFile("grafana/provisioning/dashboards/hookgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: file", "path: ${HOOKGATE_DASHBOARDS_DIR}"} {
		if !strings.Contains(string(pr), want) {
			t.Errorf("dashboards provider lacks %q", want)
		}
	}
}

func TestQueriesHaveHeaders(t *testing.T) {
	qs, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 4 {
		t.Errorf("%d library queries; want at least 4", len(qs))
	}
	for _, q := range qs {
		if len(q.Comment) < 40 {
			t.Errorf("%s: header comment %q; want a sentence saying what it answers", q.Name, q.Comment)
		}
		if !strings.Contains(q.SQL, LibraryDatabase+".exchanges") {
			t.Errorf("%s does not read %s.exchanges", q.Name, LibraryDatabase)
		}
	}
}

func TestExpand(t *testing.T) {
	from := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	to := from.Add(90 * time.Minute)
	c := Context{From: from, To: to, Interval: 30 * time.Second,
		Vars: map[string]string{"database": "hookgate", "source": "bitrix24-deals", "event_id": "it's"}}
	f, tt := from.Unix(), to.Unix()
	tests := []struct {
		name, in, want string
	}{
		{"timeFilter", "WHERE $__timeFilter(ts)", "WHERE ts >= toDateTime(" + itoa(f) + ") AND ts <= toDateTime(" + itoa(tt) + ")"},
		{"timeFilter spaces", "$__timeFilter( ts )", "ts >= toDateTime(" + itoa(f) + ") AND ts <= toDateTime(" + itoa(tt) + ")"},
		{"timeFilter_ms", "$__timeFilter_ms(ts)", "ts >= fromUnixTimestamp64Milli(" + itoa(from.UnixMilli()) + ") AND ts <= fromUnixTimestamp64Milli(" + itoa(to.UnixMilli()) + ")"},
		{"timeInterval", "$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"},
		{"timeInterval_ms", "$__timeInterval_ms(ts)", "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30000 millisecond)"},
		{"interval_s", "intDiv(x, $__interval_s) * $__interval_s", "intDiv(x, 30) * 30"},
		{"fromTime toTime", "$__fromTime, $__toTime", "toDateTime(" + itoa(f) + "), toDateTime(" + itoa(tt) + ")"},
		{"fromTime_ms", "$__fromTime_ms", "fromUnixTimestamp64Milli(" + itoa(from.UnixMilli()) + ")"},
		{"dateFilter", "$__dateFilter(d)", "d >= toDate('2026-03-01') AND d <= toDate('2026-03-01')"},
		{"braced var", "${database}.exchanges", "hookgate.exchanges"},
		{"plain var", "source = '$source'", "source = 'bitrix24-deals'"},
		{"raw format", "${source:raw}", "bitrix24-deals"},
		{"sqlstring", "event_id = ${event_id:sqlstring}", "event_id = 'it''s'"},
		{"singlequote", "${event_id:singlequote}", `'it\'s'`},
		{"grafana globals", "$__from $__to $__interval_ms", itoa(from.UnixMilli()) + " " + itoa(to.UnixMilli()) + " 30000"},
	}
	for _, tc := range tests {
		got, err := Expand(tc.in, c)
		if err != nil || got != tc.want {
			t.Errorf("Expand(%s) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// The interval is at least one second, as the plugin has it.
	c0 := c
	c0.Interval = 200 * time.Millisecond
	if got, _ := Expand("$__interval_s", c0); got != "1" {
		t.Errorf("Expand($__interval_s) with 200ms = %q; want 1", got)
	}
	for _, bad := range []string{"$nosuch", "${source:nosuchformat}", "$__timeFilter()", "$__timeFilter(a, b)", "$__nosuchmacro(ts)"} {
		if got, err := Expand(bad, c); err == nil {
			t.Errorf("Expand(%q) = %q, nil; want an error", bad, got)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// run is one way of expanding the dashboards: a time range, an interval
// and the variables' values.
type run struct {
	name     string
	interval time.Duration
	source   string
	portal   string
	event    func(story) string
}

var runs = []run{
	{name: "all-1h", interval: time.Hour, source: AllValue, portal: AllValue, event: func(s story) string { return s.Delivered }},
	{name: "filtered-1m", interval: time.Minute, source: "landing", portal: "main", event: func(s story) string { return s.Dead }},
}

func (r run) expect(rows []hookgate.Exchange, s story, now time.Time, database string) expect {
	return expect{
		rows: rows, story: s, now: now, interval: int64(r.interval / time.Second),
		ctx: Context{
			From: s.RecentBase.Add(-time.Minute), To: now.Add(time.Minute), Interval: r.interval,
			Vars: map[string]string{"database": database, "source": r.source, "portal": r.portal, "event_id": r.event(s)},
		},
	}
}

// TestQueriesOnClickHouse runs every dashboard query (panels and
// variables, expanded as Grafana and the plugin do) and every library query
// on the test environment's ClickHouse (18.16), seeded through the history
// writer, and checks their numbers against the seeded traffic.
func TestQueriesOnClickHouse(t *testing.T) {
	addr := testenv.ClickHouse(t)
	database := testenv.ClickHouseDatabase(t, addr)
	conn := testenv.ClickHouseConn(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	w, err := history.New(ctx, config.History{
		ClickHouse: config.ClickHouse{Addr: []string{addr}, Database: database, Username: "default"},
		BatchRows:  1000, FlushInterval: config.Duration(time.Second),
	}, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	rows, s := seed(t, w, now)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush history: %v", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close history: %v", err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+database+".exchanges").Scan(&n); err != nil || n != uint64(len(rows)) {
		t.Fatalf("exchanges holds %d rows (%v); want the %d seeded", n, err, len(rows))
	}
	var version string
	conn.QueryRow(ctx, "SELECT version()").Scan(&version)
	t.Logf("ClickHouse %s, %d rows", version, n)

	for _, r := range runs {
		e := r.expect(rows, s, now, database)
		for _, qc := range e.cases(t, database) {
			if r.name != runs[0].name && strings.HasPrefix(qc.name, "query:") {
				continue // the library queries take no variables: once is enough
			}
			t.Run(r.name+"/"+qc.name, func(t *testing.T) {
				tb, err := queryNative(ctx, conn, qc.sql)
				if err != nil {
					t.Fatalf("%v\n--- SQL ---\n%s", err, qc.sql)
				}
				qc.check(t, tb)
				if t.Failed() {
					t.Logf("SQL:\n%s\nanswer: %v %v", qc.sql, tb.cols, tb.rows)
				}
			})
		}
	}
}

// queryNative runs sql over the native protocol (as the plugin does with
// protocol: native) and normalises the answer.
func queryNative(ctx context.Context, conn driver.Conn, sql string) (*table, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	tb := &table{cols: rows.Columns()}
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(types))
		for i, ct := range types {
			v, err := normalize(ct.DatabaseTypeName(), reflect.ValueOf(ptrs[i]).Elem().Interface())
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", tb.cols[i], err)
			}
			row[i] = v
		}
		tb.rows = append(tb.rows, row)
	}
	return tb, rows.Err()
}

// TestQueriesOnChDB runs the modern DDL of the history package (for
// ClickHouse 26.7), the same seeded rows (as the NDJSON lines the history
// package writes) and every expanded query on a current ClickHouse, chDB,
// through dashboards/testdata/chdb.js, and applies the same checks.
func TestQueriesOnChDB(t *testing.T) {
	nodeModules := testenv.Require(t, testenv.EnvNodePath, "node_modules with the npm package chdb (scripts/node)")
	if _, err := os.Stat(filepath.Join(nodeModules, "chdb", "package.json")); err != nil {
		t.Fatalf("%s=%s has no chdb: %v; run npm install in scripts/node", testenv.EnvNodePath, nodeModules, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	const database = "hookgate"
	ddl, err := history.DDL("26.7.2.1", database, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`DateTime64\(3`).MatchString(strings.Join(ddl, "\n")) {
		t.Fatalf("history.DDL(26.7) is not the modern schema:\n%s", strings.Join(ddl, "\n"))
	}

	now := time.Now().UTC().Truncate(time.Second)
	var rec capture
	rows, s := seed(t, &rec, now)
	var ndjson []byte
	for i := range rows {
		if ndjson, err = history.AppendJSONEachRow(ndjson, &rows[i]); err != nil {
			t.Fatal(err)
		}
	}

	type q struct {
		Name string `json:"name"`
		SQL  string `json:"sql"`
	}
	input := struct {
		Statements []string `json:"statements"`
		Inserts    []struct {
			Table   string   `json:"table"`
			Columns []string `json:"columns"`
			Rows    string   `json:"rows"`
		} `json:"inserts"`
		Queries []q `json:"queries"`
	}{Statements: ddl}
	input.Inserts = append(input.Inserts, struct {
		Table   string   `json:"table"`
		Columns []string `json:"columns"`
		Rows    string   `json:"rows"`
	}{database + ".exchanges", history.Columns, string(ndjson)})

	type named struct {
		run string
		qcase
	}
	var all []named
	for _, r := range runs {
		e := r.expect(rows, s, now, database)
		for _, qc := range e.cases(t, database) {
			if r.name != runs[0].name && strings.HasPrefix(qc.name, "query:") {
				continue
			}
			all = append(all, named{r.name, qc})
			input.Queries = append(input.Queries, q{r.name + "/" + qc.name, qc.sql})
		}
		// $__timeInterval(ts), the plugin's bucket, and the dashboards'
		// portable bucket agree on every row (toStartOfInterval exists on
		// modern servers only).
		same, err := Expand(`SELECT count() AS n, countIf(toDateTime(intDiv(toUInt32(toDateTime(ts)), $__interval_s) * $__interval_s) != $__timeInterval(ts)) AS differ FROM ${database}.exchanges`, e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, named{r.name, qcase{name: "bucket = $__timeInterval", sql: same, check: func(t *testing.T, tb *table) {
			if tb.num(t, 0, "n") != float64(len(rows)) || tb.num(t, 0, "differ") != 0 {
				t.Errorf("rows %v, differing buckets %v; want %d, 0", tb.num(t, 0, "n"), tb.num(t, 0, "differ"), len(rows))
			}
		}}})
		input.Queries = append(input.Queries, q{r.name + "/bucket = $__timeInterval", same})
	}

	dir := t.TempDir()
	in := filepath.Join(dir, "input.json")
	b, _ := json.Marshal(input)
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "chdb.js"), in)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodeModules, "TZ=UTC")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chdb.js: %v\n%s", err, stderr.String())
	}
	var res struct {
		Version string `json:"version"`
		Results map[string]struct {
			Meta []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"meta"`
			Data []map[string]any `json:"data"`
		} `json:"results"`
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("chdb.js output: %v\n%s", err, out)
	}
	if v, err := history.ParseServerVersion(res.Version); err != nil || !v.Modern() {
		t.Fatalf("chDB reports ClickHouse %q; want a current version", res.Version)
	}
	t.Logf("chDB: ClickHouse %s, %d rows, %d queries", res.Version, len(rows), len(all))
	for _, qc := range all {
		t.Run(qc.run+"/"+qc.name, func(t *testing.T) {
			r, ok := res.Results[qc.run+"/"+qc.name]
			if !ok {
				t.Fatalf("no result from chdb.js")
			}
			tb := &table{}
			for _, m := range r.Meta {
				tb.cols = append(tb.cols, m.Name)
			}
			for _, d := range r.Data {
				row := make([]any, len(r.Meta))
				for i, m := range r.Meta {
					v, err := normalize(m.Type, d[m.Name])
					if err != nil {
						t.Fatalf("column %s: %v", m.Name, err)
					}
					row[i] = v
				}
				tb.rows = append(tb.rows, row)
			}
			qc.check(t, tb)
			if t.Failed() {
				t.Logf("SQL:\n%s\nanswer: %v %v", qc.sql, tb.cols, tb.rows)
			}
		})
	}
}
