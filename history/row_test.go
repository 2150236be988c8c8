package history

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
)

func TestAppendJSONEachRow(t *testing.T) {
	x := hookgate.Exchange{
		TS:         time.Date(2026, 11, 22, 10, 4, 5, 123e6, time.FixedZone("X", 3600)),
		ExchangeID: "0b6d3f4e-7a55-4b7e-9d0c-2f1e8c5a9b10", EventID: "ev", Direction: hookgate.Outbound,
		Source: "main", Provider: "bitrix24", Event: "ONCRMDEALADD", Operation: "crm.deal.get",
		HTTPMethod: "POST", URL: "https://x/rest", Status: 503, Outcome: hookgate.OutcomeRetry,
		Error: "QUERY_LIMIT_EXCEEDED", Attempt: 2, DurationMS: 1.5,
		RequestHeaders: "a: \"b\"\n", RequestBody: "<tag>&", ResponseBody: "{}", RemoteAddr: "127.0.0.1",
	}
	b, err := AppendJSONEachRow(nil, &x)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("AppendJSONEachRow = %q; want one line", b)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	if diff := cmp.Diff(len(Columns), len(keys)); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
	for _, c := range Columns {
		if _, ok := got[c]; !ok {
			t.Errorf("AppendJSONEachRow: column %s missing", c)
		}
	}
	if got["ts"] != "2026-11-22 09:04:05.123" || got["direction"] != "outbound" || got["status"] != 503.0 {
		t.Errorf("AppendJSONEachRow = %s; want ts in UTC text with milliseconds, direction by name, status a number", b)
	}
	back, err := ParseJSONEachRow(b)
	if err != nil {
		t.Fatal(err)
	}
	want := x
	want.TS = x.TS.UTC()
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("ParseJSONEachRow(AppendJSONEachRow(x)) (-want +got):\n%s", diff)
	}
}

func TestNormalize(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	x := hookgate.Exchange{Direction: hookgate.Inbound}
	if err := normalize(&x, now); err != nil {
		t.Fatal(err)
	}
	if !validUUID(x.ExchangeID) || !x.TS.Equal(now()) || x.Attempt != 1 {
		t.Errorf("normalize filled %+v; want a UUID, the clock's time and attempt 1", x)
	}
	for _, bad := range []hookgate.Exchange{
		{Direction: 0},
		{Direction: hookgate.Inbound, ExchangeID: "nope"},
	} {
		if err := normalize(&bad, now); err == nil {
			t.Errorf("normalize(%+v) = nil; want an error", bad)
		}
	}
}

func TestDDL(t *testing.T) {
	legacy, err := DDL("18.16.1", "hookgate", 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	modern, err := DDL("26.7.2.1", "hookgate", 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, m := strings.Join(legacy, ";\n"), strings.Join(modern, ";\n")
	for _, no := range []string{"DateTime64", "LowCardinality", "CODEC", "TTL"} {
		if strings.Contains(l, no) {
			t.Errorf("DDL(18.16) contains %s:\n%s", no, l)
		}
	}
	for _, want := range []string{"DateTime64(3, 'UTC')", "LowCardinality(String)", "CODEC(Delta, ZSTD(1))", "TTL toDateTime(ts) + INTERVAL 7776000 SECOND"} {
		if !strings.Contains(m, want) {
			t.Errorf("DDL(26.7) lacks %s:\n%s", want, m)
		}
	}
	for _, ddl := range []string{l, m} {
		for _, want := range []string{"ORDER BY (direction, source, ts)", "PARTITION BY toYYYYMM(ts)", "Enum8('inbound' = 1, 'outbound' = 2)", "exchange_id UUID"} {
			if !strings.Contains(ddl, want) {
				t.Errorf("DDL lacks %s:\n%s", want, ddl)
			}
		}
		// Columns in table order.
		last := -1
		for _, c := range Columns {
			i := strings.Index(ddl, "\n    "+c+" ")
			if i <= last {
				t.Errorf("DDL: column %s missing or out of order", c)
			}
			last = i
		}
	}
	if _, err := DDL("garbage", "hookgate", 0); err == nil {
		t.Errorf("DDL(garbage) = nil error; want one")
	}
}

func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC)
	clock := day
	s, err := openFileSink(dir, 2000, 0, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	rows := testRows(30, "rot")
	if err := s.write(rows[:20]); err != nil {
		t.Fatal(err)
	}
	clock = day.Add(2 * time.Minute) // next day
	if err := s.write(rows[20:]); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(dir)
	if len(files) < 3 {
		t.Fatalf("files = %v; want rotation by size and by day", files)
	}
	var day1, day2, lines int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines += strings.Count(string(b), "\n")
		if st, _ := os.Stat(f); st.Size() > 2000+600 {
			t.Errorf("%s is %d bytes; want about file_max_bytes", f, st.Size())
		}
		switch {
		case strings.HasPrefix(filepath.Base(f), "exchanges-20261122-"):
			day1++
		case strings.HasPrefix(filepath.Base(f), "exchanges-20261123-"):
			day2++
		}
	}
	if lines != 30 || day1 == 0 || day2 == 0 {
		t.Errorf("rotation: %d lines, %d files of day 1, %d of day 2; want 30 lines over both days", lines, day1, day2)
	}

	// A torn last line (crash mid-write) is cut on the next open.
	last := files[len(files)-1]
	f, _ := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"ts":"2026-11-23 00:0`)
	f.Close()
	if _, err := openFileSink(dir, 2000, 0, func() time.Time { return clock }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(last)
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("after reopen %s ends %q; want the torn line cut", last, b[max(0, len(b)-20):])
	}
}

// testRows makes n rows of mixed outcomes and directions.
func testRows(n int, source string) []hookgate.Exchange {
	outcomes := []string{hookgate.OutcomeAccepted, hookgate.OutcomeDuplicate, hookgate.OutcomeRejected, hookgate.OutcomeOK, hookgate.OutcomeRetry, hookgate.OutcomeFailed, hookgate.OutcomeDead}
	base := time.Now().UTC().Truncate(time.Second)
	rows := make([]hookgate.Exchange, n)
	for i := range rows {
		o := outcomes[i%len(outcomes)]
		d := hookgate.Inbound
		if i%len(outcomes) >= 3 {
			d = hookgate.Outbound
		}
		rows[i] = hookgate.Exchange{
			TS: base.Add(time.Duration(i) * time.Millisecond), ExchangeID: hookgate.NewUUID(),
			EventID: hookgate.NewUUID(), Direction: d, Source: source, Provider: "bitrix24",
			Event: "ONCRMDEALADD", HTTPMethod: "POST", URL: "/webhook/" + source, Status: 200,
			Outcome: o, Attempt: 1, DurationMS: 0.25,
			RequestHeaders: "Content-Type: application/x-www-form-urlencoded\n",
			RequestBody:    "event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=" + string(rune('0'+i%10)) + "&note=\"quoted\"\ttab ünïcode",
			RemoteAddr:     "127.0.0.1:5000",
		}
	}
	return rows
}

// TestFileRetention: NDJSON files of days older than history.retention are
// removed when the day turns, as the ClickHouse TTL drops old rows.
func TestFileRetention(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"exchanges-20261101-0001.ndjson", "exchanges-20261119-0001.ndjson", "exchanges-20261121-0003.ndjson"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s, err := openFileSink(dir, 1<<20, 72*time.Hour, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	clock = clock.Add(24 * time.Hour) // next day: 2026-11-23, cutoff 2026-11-20
	if err := s.write(testRows(1, "ret")); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(dir)
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	want := []string{"exchanges-20261121-0003.ndjson", "exchanges-20261123-0001.ndjson"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files after retention (-want +got):\n%s", diff)
	}
}
