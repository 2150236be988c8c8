package history

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/internal/testenv"
)

func testConfig(addr, database string) config.History {
	h := config.History{
		ClickHouse:    config.ClickHouse{Database: database, Username: "default"},
		BatchRows:     500,
		FlushInterval: config.Duration(50 * time.Millisecond),
		Retention:     config.Duration(24 * time.Hour),
		MaxBodyBytes:  4096,
		SpoolMaxBytes: 64 << 20,
		FileMaxBytes:  1 << 20,
	}
	if addr != "" {
		h.ClickHouse.Addr = []string{addr}
	}
	return h
}

// counter is an observer that counts rows per result.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) observe(result string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[result] += n
}

func (c *counter) get(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[result]
}

func testOptions(c *counter) []Option {
	return []Option{
		WithObserver(c.observe),
		WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		WithTimeouts(time.Second, 10*time.Second, 10*time.Second),
	}
}

// start runs w until the returned stop is called; stop waits for Run's end
// and closes w.
func start(t *testing.T, w *Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Logf("Close = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func outcomeCounts(rows []hookgate.Exchange) map[string]uint64 {
	m := map[string]uint64{}
	for _, x := range rows {
		m[x.Outcome]++
	}
	return m
}

func tableOutcomes(t *testing.T, conn driver.Conn, database string) map[string]uint64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT outcome, count() FROM "+database+".exchanges GROUP BY outcome")
	if err != nil {
		t.Fatalf("query outcomes: %v", err)
	}
	defer rows.Close()
	m := map[string]uint64{}
	for rows.Next() {
		var o string
		var n uint64
		if err := rows.Scan(&o, &n); err != nil {
			t.Fatal(err)
		}
		m[o] = n
	}
	return m
}

// rowCounts returns count() and uniqExact(exchange_id).
func rowCounts(t testing.TB, conn driver.Conn, database string) (total, distinct uint64) {
	t.Helper()
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(exchange_id) FROM "+database+".exchanges").Scan(&total, &distinct); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return total, distinct
}

func TestMigrate(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	conn := testenv.ClickHouseConn(t, addr)
	ctx := context.Background()
	for i := range 2 { // the second run is a no-op
		if err := Migrate(ctx, conn, db, 24*time.Hour); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	v, err := SchemaVersion(ctx, conn, db)
	if err != nil || v != 2 {
		t.Errorf("SchemaVersion = %d, %v; want 2", v, err)
	}
	var applied uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations").Scan(&applied); err != nil || applied != 2 {
		t.Errorf("schema_migrations rows = %d, %v; want 2 after two runs", applied, err)
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'exchanges'", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	types := map[string]string{}
	for rows.Next() {
		var n, ty string
		if err := rows.Scan(&n, &ty); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
		types[n] = ty
	}
	if diff := cmp.Diff(Columns, names); diff != "" {
		t.Errorf("exchanges columns (-want +got):\n%s", diff)
	}
	if types["direction"] != "Enum8('inbound' = 1, 'outbound' = 2)" || types["exchange_id"] != "UUID" || types["status"] != "UInt16" {
		t.Errorf("column types = %v", types)
	}
}

// TestMigrateAddsTraceID upgrades a table made by the version before
// trace_id (migration 1 without the column, one row in it): Migrate adds
// the column at the end, the old row reads with trace_id "", a new row
// keeps its trace id, and a second Migrate changes nothing.
func TestMigrateAddsTraceID(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	conn := testenv.ClickHouseConn(t, addr)
	ctx := context.Background()
	var raw string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	v, err := ParseServerVersion(raw)
	if err != nil {
		t.Fatal(err)
	}
	// the schema of version 1: migration 1's table less trace_id
	old := createExchanges(v, db, 0)[0]
	cut := strings.Replace(old, ",\n    trace_id "+columnByName("trace_id").typ(v), "", 1)
	if cut == old {
		t.Fatalf("trace_id not found as the last column of:\n%s", old)
	}
	for _, stmt := range append(bootstrapDDL(db), cut) {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, name, applied_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(uint32(1), "create exchanges", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	oldCols := Columns[:len(Columns)-1]
	b, err = conn.PrepareBatch(ctx, "INSERT INTO "+db+".exchanges ("+strings.Join(oldCols, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	before := hookgate.Exchange{TS: time.Now().UTC().Truncate(time.Second), ExchangeID: hookgate.NewUUID(), EventID: "before", Direction: hookgate.Inbound, Outcome: "accepted", Attempt: 1}
	vals := make([]any, 0, len(oldCols))
	for i := range oldCols {
		vals = append(vals, columns[i].value(&before))
	}
	if err := b.Append(vals...); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		if err := Migrate(ctx, conn, db, 0); err != nil {
			t.Fatalf("Migrate #%d over version 1: %v", i+1, err)
		}
	}
	if got, err := SchemaVersion(ctx, conn, db); err != nil || got != 2 {
		t.Errorf("SchemaVersion = %d, %v; want 2", got, err)
	}
	var names []string
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'exchanges'", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	if diff := cmp.Diff(Columns, names); diff != "" {
		t.Errorf("columns after the upgrade (-want +got):\n%s", diff)
	}

	w, err := New(ctx, testConfig(addr, db), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	after := before
	after.ExchangeID, after.EventID, after.TraceID = hookgate.NewUUID(), "after", "4bf92f3577b34da6a3ce929d0e0e4736"
	w.Record(after)
	stop()
	got := map[string]string{}
	rows, err = conn.Query(ctx, "SELECT event_id, trace_id FROM "+db+".exchanges")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var e, tr string
		if err := rows.Scan(&e, &tr); err != nil {
			t.Fatal(err)
		}
		got[e] = tr
	}
	if diff := cmp.Diff(map[string]string{"before": "", "after": after.TraceID}, got); diff != "" {
		t.Errorf("event_id → trace_id (-want +got):\n%s", diff)
	}
}

func TestWriterOutcomes(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	var c counter
	w, err := New(context.Background(), testConfig(addr, db), t.TempDir(), "", testOptions(&c)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	rows := testRows(2345, "outcomes")
	for _, x := range rows {
		w.Record(x)
	}
	stop()
	conn := testenv.ClickHouseConn(t, addr)
	if diff := cmp.Diff(outcomeCounts(rows), tableOutcomes(t, conn, db)); diff != "" {
		t.Errorf("SELECT outcome, count() (-sent +table):\n%s", diff)
	}
	if total, distinct := rowCounts(t, conn, db); total != 2345 || distinct != 2345 {
		t.Errorf("rows = %d (%d distinct); want 2345", total, distinct)
	}
	// A burst larger than the queue overflows to the spool: written or
	// replayed, never dropped.
	// (skipped: rows of a spooled batch found already in ClickHouse after
	// an insert that timed out under load; the table counts above prove
	// they are there once.)
	if c.get(ResultWritten)+c.get(ResultReplayed)+c.get(ResultSkipped) != 2345 || c.get(ResultDropped) != 0 {
		t.Errorf("observer = %v; want 2345 written, replayed or skipped, none dropped", c.n)
	}

	// One row read back whole.
	want := rows[7]
	var got hookgate.Exchange
	row := conn.QueryRow(context.Background(), "SELECT "+SelectList()+" FROM "+db+".exchanges WHERE exchange_id = toUUID(?)", want.ExchangeID)
	if err := ScanExchange(row.Scan, &got); err != nil {
		t.Fatal(err)
	}
	want.TS = want.TS.Truncate(time.Second) // DateTime on 18.16
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("row read back (-want +got):\n%s", diff)
	}
}

func TestWriterRedacts(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	secrets := []string{"s3cr3t-app-token", "api key/with+plus"}
	red := hookgate.NewRedactor(secrets...)
	var c counter
	w, err := New(context.Background(), testConfig(addr, db), t.TempDir(), "", append(testOptions(&c), WithRedact(red.Redact))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	for i, x := range testRows(50, "redact") {
		s := secrets[i%2]
		x.URL = "/webhooks/" + s + "?token=" + s
		x.RequestHeaders = "Authorization: Bearer " + s
		x.RequestBody = `{"auth":{"application_token":"` + s + `"}}&q=api+key%2Fwith%2Bplus`
		x.ResponseBody = s
		x.Error = "bad " + s
		w.Record(x)
	}
	stop()
	conn := testenv.ClickHouseConn(t, addr)
	for _, s := range append(secrets, "api+key%2Fwith%2Bplus") {
		var n uint64
		var all []string
		for _, c := range Columns {
			all = append(all, "toString("+c+")")
		}
		q := "SELECT count() FROM " + db + ".exchanges WHERE position(concat(" + strings.Join(all, ", ") + "), ?) > 0"
		if err := conn.QueryRow(context.Background(), q, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows contain secret %q", n, s)
		}
	}
	if total, _ := rowCounts(t, conn, db); total != 50 {
		t.Errorf("rows = %d; want 50", total)
	}
}

// TestWriterOutage stops a private ClickHouse while rows flow, restarts it,
// and expects every row exactly once.
func TestWriterOutage(t *testing.T) {
	srv := testenv.StartClickHouse(t)
	db := "hookgate"
	var c counter
	cfg := testConfig(srv.Addr(), db)
	cfg.BatchRows = 200
	w, err := New(context.Background(), cfg, t.TempDir(), "", append(testOptions(&c), WithDownGrace(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	rows := testRows(6000, "outage")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 6000 rows over about 3 s
		defer wg.Done()
		for i, x := range rows {
			w.Record(x)
			if i%20 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	time.Sleep(700 * time.Millisecond)
	srv.Stop()
	time.Sleep(800 * time.Millisecond)
	if err := w.Healthy(); !errors.Is(err, ErrClickHouseDown) {
		t.Errorf("Healthy during outage = %v; want ErrClickHouseDown", err)
	}
	srv.Start()
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for w.Flush(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("spool not replayed 30 s after ClickHouse came back: %v", w.Flush(context.Background()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	conn := testenv.ClickHouseConn(t, srv.Addr())
	total, distinct := rowCounts(t, conn, db)
	if total != 6000 || distinct != 6000 {
		t.Errorf("after outage: %d rows, %d distinct; want 6000 exactly once", total, distinct)
	}
	if diff := cmp.Diff(outcomeCounts(rows), tableOutcomes(t, conn, db)); diff != "" {
		t.Errorf("outcomes (-sent +table):\n%s", diff)
	}
	if c.get(ResultSpooled) == 0 || c.get(ResultReplayed) == 0 {
		t.Errorf("observer = %v; want rows spooled and replayed", c.n)
	}
	if err := w.Healthy(); err != nil {
		t.Errorf("Healthy after recovery = %v", err)
	}
	t.Logf("observer: %v", c.n)
}

const crashHelperEnv = "HOOKGATE_HISTORY_CRASH_HELPER"

// TestMain runs the child process of TestWriterCrash when the test binary
// is re-executed with crashHelperEnv set, and the tests otherwise.
func TestMain(m *testing.M) {
	if dataDir := os.Getenv(crashHelperEnv); dataDir != "" {
		crashHelper(dataDir)
		return
	}
	os.Exit(m.Run())
}

// crashHelper spools rows (ClickHouse unreachable), says so, and waits to
// be killed.
func crashHelper(dataDir string) {
	n, _ := strconv.Atoi(os.Getenv(crashHelperEnv + "_ROWS"))
	cfg := testConfig(os.Getenv(crashHelperEnv+"_ADDR"), os.Getenv(crashHelperEnv+"_DB"))
	cfg.BatchRows = 100
	w, err := New(context.Background(), cfg, dataDir, "", WithTimeouts(200*time.Millisecond, time.Second, time.Second))
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	go w.Run(context.Background())
	for _, x := range testRows(n, "crash") {
		w.Record(x)
	}
	if err := w.Flush(context.Background()); err == nil {
		fmt.Println("FAIL Flush = nil; want rows left in the spool")
		os.Exit(1)
	}
	fmt.Printf("SPOOLED %d\n", w.SpoolBytes())
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestWriterCrash kills (SIGKILL) a process holding spooled rows; a new
// writer on the same data dir replays them.
func TestWriterCrash(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	dataDir := t.TempDir()
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dataDir, crashHelperEnv+"_ROWS=1234",
		crashHelperEnv+"_ADDR="+dead, crashHelperEnv+"_DB="+db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	spooled := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "SPOOLED ") {
			spooled = true
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !spooled {
		t.Fatal("helper did not spool rows")
	}

	var c counter
	w, err := New(context.Background(), testConfig(addr, db), dataDir, "", testOptions(&c)...)
	if err != nil {
		t.Fatal(err)
	}
	if w.SpoolBytes() == 0 {
		t.Fatal("no spool found after the crash")
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after restart = %v", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := testenv.ClickHouseConn(t, addr)
	if total, distinct := rowCounts(t, conn, db); total != 1234 || distinct != 1234 {
		t.Errorf("after crash: %d rows (%d distinct); want 1234", total, distinct)
	}
	if c.get(ResultReplayed) != 1234 {
		t.Errorf("observer = %v; want 1234 replayed", c.n)
	}
}

// TestWriterSpoolTried: a segment whose insert may have landed (tried) is
// checked against the table, so a replay inserts no duplicate.
func TestWriterSpoolTried(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	dataDir := t.TempDir()
	rows := testRows(300, "tried")
	var c counter
	w, err := New(context.Background(), testConfig(addr, db), dataDir, "", testOptions(&c)...)
	if err != nil {
		t.Fatal(err)
	}
	// The first 200 rows reached ClickHouse; then the process "died" before
	// deleting the segment holding all 300.
	for _, x := range rows[:200] {
		w.Record(x)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Close(context.Background())
	sp, err := openSpool(dataDir+"/history/spool", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.write(rows, true); err != nil {
		t.Fatal(err)
	}
	w, err = New(context.Background(), testConfig(addr, db), dataDir, "", testOptions(&c)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Close(context.Background())
	conn := testenv.ClickHouseConn(t, addr)
	if total, distinct := rowCounts(t, conn, db); total != 300 || distinct != 300 {
		t.Errorf("rows = %d (%d distinct); want 300", total, distinct)
	}
	if c.get(ResultSkipped) != 200 || c.get(ResultReplayed) != 100 {
		t.Errorf("observer = %v; want 200 skipped, 100 replayed", c.n)
	}
}

// TestWriterSpoolFull: with ClickHouse unreachable and a small spool cap,
// rows are counted as dropped, logged, and Healthy says so.
func TestWriterSpoolFull(t *testing.T) {
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cfg := testConfig(dead, "hookgate")
	cfg.BatchRows = 50
	cfg.SpoolMaxBytes = 40 << 10
	var c counter
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	var gauge int64
	w, err := New(context.Background(), cfg, t.TempDir(), "", append(testOptions(&c), WithLogger(logger),
		WithSpoolGauge(func(b int64) { gauge = b }))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range testRows(1000, "full") {
		w.Record(x)
	}
	w.Flush(context.Background())
	if err := w.Healthy(); !errors.Is(err, ErrSpoolFull) {
		t.Errorf("Healthy = %v; want ErrSpoolFull", err)
	}
	if c.get(ResultDropped) == 0 || c.get(ResultSpooled)+c.get(ResultDropped) != 1000 {
		t.Errorf("observer = %v; want spooled + dropped = 1000, some dropped", c.n)
	}
	if int64(c.get(ResultDropped)) != w.Dropped() {
		t.Errorf("Dropped() = %d; observer says %d", w.Dropped(), c.get(ResultDropped))
	}
	if gauge == 0 || gauge > cfg.SpoolMaxBytes {
		t.Errorf("spool gauge = %d; want 0 < gauge <= %d", gauge, cfg.SpoolMaxBytes)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "SPOOL FULL") {
		t.Errorf("log lacks the spool-full error:\n%s", logs.String())
	}
	logMu.Unlock()
	w.Close(context.Background())
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestFilesLoadIntoClickHouse: NDJSON files written without ClickHouse load
// into the real table with FORMAT JSONEachRow, and the counts match.
func TestFilesLoadIntoClickHouse(t *testing.T) {
	addr := testenv.ClickHouse(t)
	httpAddr := testenv.ClickHouseHTTP(t)
	db := testenv.ClickHouseDatabase(t, addr)
	dataDir := t.TempDir()
	cfg := testConfig("", db)
	cfg.FileMaxBytes = 200 << 10
	var c counter
	w, err := New(context.Background(), cfg, dataDir, "", testOptions(&c)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	rows := testRows(3000, "files")
	rows[1].ResponseBody = "line1\nline2 \"q\" \\ \u2028 \x01"
	for _, x := range rows {
		w.Record(x)
	}
	stop()
	files, err := Files(dataDir + "/history")
	if err != nil || len(files) < 2 {
		t.Fatalf("Files = %v, %v; want rotated files", files, err)
	}
	conn := testenv.ClickHouseConn(t, addr)
	if err := Migrate(context.Background(), conn, db, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// ts has milliseconds: 18.16's DateTime reads them with best_effort.
		if _, err := testenv.ClickHouseHTTPQuery(httpAddr, "INSERT INTO "+db+".exchanges FORMAT JSONEachRow", data, "date_time_input_format=best_effort"); err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
	}
	if diff := cmp.Diff(outcomeCounts(rows), tableOutcomes(t, conn, db)); diff != "" {
		t.Errorf("outcomes (-written +loaded):\n%s", diff)
	}
	var body string
	if err := conn.QueryRow(context.Background(), "SELECT response_body FROM "+db+".exchanges WHERE exchange_id = toUUID(?)", rows[1].ExchangeID).Scan(&body); err != nil || body != rows[1].ResponseBody {
		t.Errorf("response_body = %q, %v; want %q", body, err, rows[1].ResponseBody)
	}
	if c.get(ResultWritten) != 3000 {
		t.Errorf("observer = %v; want 3000 written", c.n)
	}
}

// An insert larger than blockBytes goes out as several blocks of one
// INSERT: every row arrives, and the server squashes the blocks into one
// part, as it did the single block before.
func TestInsertInBlocks(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	w, err := New(context.Background(), testConfig(addr, db), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	rows := testRows(3000, "blocks")
	var size int64
	for i := range rows {
		rows[i].RequestBody = strings.Repeat("b", 1500)
		if err := normalize(&rows[i], time.Now); err != nil {
			t.Fatal(err)
		}
		size += rowSize(&rows[i])
	}
	if size < 3*blockBytes {
		t.Fatalf("test rows are %d bytes; want at least 3 blocks of %d", size, blockBytes)
	}
	if err := w.insert(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	conn := testenv.ClickHouseConn(t, addr)
	if total, distinct := rowCounts(t, conn, db); total != 3000 || distinct != 3000 {
		t.Errorf("rows = %d (%d distinct); want 3000", total, distinct)
	}
	// Parts made by an insert are level 0; a merge of several would be
	// level 1 or more.
	var parts, maxLevel uint64
	err = conn.QueryRow(context.Background(), "SELECT count(), toUInt64(max(level)) FROM system.parts WHERE database = ? AND table = ? AND active", db, Table).Scan(&parts, &maxLevel)
	if err != nil {
		t.Fatal(err)
	}
	if parts != 1 || maxLevel != 0 {
		t.Errorf("active parts = %d, max level %d; want the blocks squashed into one part of level 0", parts, maxLevel)
	}
}

// Rows that overflowed a full queue into the open spool segment do not
// send later batches through the spool (encode, fsync, read back): the
// batch is inserted directly, and the overflow rows are replayed with the
// next flush. Sealed segments still go first.
func TestBatchNotHeldByOverflow(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, addr)
	var c counter
	opts := append(testOptions(&c), WithQueue(10, 64<<20))
	w, err := New(context.Background(), testConfig(addr, db), t.TempDir(), "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	rows := testRows(40, "overflow")
	for _, x := range rows[:15] { // 10 queued, 5 overflow into the open segment
		w.Record(x)
	}
	if got := c.get(ResultSpooled); got != 5 {
		t.Fatalf("spooled after a full queue = %d; want 5", got)
	}
	if w.spool.sealedPending() || !w.spool.pending() {
		t.Fatalf("spool: sealed pending %v, pending %v; want only an open segment", w.spool.sealedPending(), w.spool.pending())
	}
	batch := rows[15:25]
	for i := range batch {
		if err := normalize(&batch[i], time.Now); err != nil {
			t.Fatal(err)
		}
	}
	w.send(context.Background(), batch, false)
	if got := c.get(ResultWritten); got != 10 {
		t.Errorf("written after send beside an open overflow segment = %d; want the batch's 10", got)
	}
	if got := c.get(ResultSpooled); got != 5 {
		t.Errorf("spooled = %d; want still 5 (the batch went to ClickHouse)", got)
	}
	// A sealed segment, on the other hand, holds later batches back.
	if err := w.spool.sealOverflow(); err != nil {
		t.Fatal(err)
	}
	later := rows[25:30]
	for i := range later {
		if err := normalize(&later[i], time.Now); err != nil {
			t.Fatal(err)
		}
	}
	w.send(context.Background(), later, false)
	if got := c.get(ResultSpooled); got != 10 {
		t.Errorf("spooled after a send behind a sealed segment = %d; want 10", got)
	}
	// Everything lands once.
	stop := start(t, w)
	for _, x := range rows[30:] {
		w.Record(x)
	}
	stop()
	conn := testenv.ClickHouseConn(t, addr)
	if total, distinct := rowCounts(t, conn, db); total != 40 || distinct != 40 {
		t.Errorf("rows = %d (%d distinct); want 40", total, distinct)
	}
}
