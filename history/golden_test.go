package history

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenRow has every column set, text that needs escaping, a time with
// more than milliseconds in another zone and a body over the limit.
func goldenRow() hookgate.Exchange {
	return hookgate.Exchange{
		TS:         time.Date(2026, 11, 22, 10, 4, 5, 123456789, time.FixedZone("CET", 3600)),
		ExchangeID: "0b6d3f4e-7a55-4b7e-9d0c-2f1e8c5a9b10", EventID: "5f0c2a8e-1d3b-5c4a-8e9f-0a1b2c3d4e5f",
		Direction: hookgate.Outbound, Source: "main", Provider: "bitrix24", Event: "ONCRMDEALADD",
		Operation: "crm.deal.get", HTTPMethod: "POST", URL: "https://portal.example/rest/1/[redacted]/crm.deal.get.json",
		Status: 503, Outcome: hookgate.OutcomeRetry, Error: "QUERY_LIMIT_EXCEEDED", Attempt: 2, DurationMS: 12.5,
		RequestHeaders: "Content-Type: application/x-www-form-urlencoded\n",
		RequestBody:    "id=42&note=<\"q\" & \\ \t café \u2028>",
		ResponseBody:   `{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests: ` + strings.Repeat("ж", 20) + `"}`,
		RemoteAddr:     "",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from %s (-want +got):\n%s", t.Name(), path, diff)
	}
}

// TestGoldenNDJSONRow pins an NDJSON history line as the writer stores it
// (max_body_bytes 101: the response body cut before the character across
// the limit, with its marker).
func TestGoldenNDJSONRow(t *testing.T) {
	cfg := config.Default().History
	cfg.MaxBodyBytes = 101
	dataDir := t.TempDir()
	w, err := New(context.Background(), cfg, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	w.Record(goldenRow())
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, err := Files(filepath.Join(dataDir, "history"))
	if err != nil || len(files) != 1 {
		t.Fatalf("Files = %v, %v; want one", files, err)
	}
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ndjson_row.golden", got)
}

// TestGoldenSpoolLine pins a spool segment's line: the same codec as the
// NDJSON files, so that a spool written by this version reads back in the
// next.
func TestGoldenSpoolLine(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.write([]hookgate.Exchange{goldenRow()}, false); err != nil {
		t.Fatal(err)
	}
	seg, ok := sp.oldest()
	if !ok {
		t.Fatal("no segment written")
	}
	got, err := os.ReadFile(sp.path(seg))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "spool_line.golden", got)
	rows, bad, err := sp.read(seg)
	want := goldenRow()
	want.TS = time.Date(2026, 11, 22, 9, 4, 5, 123e6, time.UTC)
	if err != nil || bad != 0 || len(rows) != 1 {
		t.Fatalf("read = %d rows, %d bad, %v; want the one row", len(rows), bad, err)
	}
	if diff := cmp.Diff(want, rows[0]); diff != "" {
		t.Errorf("spool line read back (-want +got):\n%s", diff)
	}
}

// TestSpoolLineBeforeTraceID reads a spool line written before the
// trace_id column (migration 2) existed: the row is whole, its trace_id
// empty. Spools and NDJSON files of the earlier version stay readable.
func TestSpoolLineBeforeTraceID(t *testing.T) {
	old := `{"ts":"2026-11-22 09:04:05.123","exchange_id":"0b6d3f4e-7a55-4b7e-9d0c-2f1e8c5a9b10","event_id":"e1","direction":"outbound",` +
		`"source":"main","provider":"bitrix24","event":"ONCRMDEALADD","operation":"crm.deal.get","http_method":"POST","url":"u",` +
		`"status":503,"outcome":"retry","error":"QUERY_LIMIT_EXCEEDED","attempt":2,"duration_ms":12.5,"request_headers":"",` +
		`"request_body":"","response_body":"","remote_addr":""}` + "\n"
	x, err := ParseJSONEachRow([]byte(old))
	if err != nil {
		t.Fatalf("ParseJSONEachRow(line without trace_id) = %v", err)
	}
	if x.TraceID != "" || x.EventID != "e1" || x.Attempt != 2 || x.Error != "QUERY_LIMIT_EXCEEDED" {
		t.Errorf("ParseJSONEachRow(line without trace_id) = %+v; want the row, trace_id empty", x)
	}
}
