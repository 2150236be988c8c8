package history

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/testenv"
)

// BenchmarkWriterClickHouse records b.N rows (1 KiB request body each) as
// fast as the writer drains them (the producer pauses while the queue is
// full, so this measures the ClickHouse path, not the spool), and waits
// until every row is in the real ClickHouse. It reports rows/s end to end,
// the peak heap in use while it ran (sampled every 5 ms), and how many rows
// overflowed the queue to the spool anyway.
func BenchmarkWriterClickHouse(b *testing.B) {
	for _, batch := range []int{10000, 1000} {
		b.Run("batch_rows="+strconv.Itoa(batch), func(b *testing.B) { benchmarkWriter(b, batch) })
	}
}

func benchmarkWriter(b *testing.B, batchRows int) {
	addr := testenv.ClickHouse(b)
	db := testenv.ClickHouseDatabase(b, addr)
	cfg := testConfig(addr, db)
	cfg.BatchRows = batchRows
	cfg.FlushInterval = 1e9
	cfg.SpoolMaxBytes = 1 << 30
	var c counter
	w, err := New(context.Background(), cfg, b.TempDir(), "", WithObserver(c.observe))
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil { // migrate outside the timing
		b.Fatal(err)
	}
	rows := testRows(10000, "bench")
	body := strings.Repeat("x", 1024)
	for i := range rows {
		rows[i].RequestBody = body
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		x := rows[i%len(rows)]
		x.ExchangeID = ""
		for len(w.queue) >= cap(w.queue) {
			time.Sleep(100 * time.Microsecond)
		}
		w.Record(x)
	}
	for w.Flush(context.Background()) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	close(stopSample)
	<-sampled
	w.Close(context.Background())

	conn := testenv.ClickHouseConn(b, addr)
	if total, _ := rowCounts(b, conn, db); total != uint64(b.N) {
		b.Fatalf("rows in ClickHouse = %d; want %d", total, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "peak-heap-growth-MiB")
	b.ReportMetric(float64(c.get(ResultSpooled)), "spooled-rows")
}

// BenchmarkSpoolReplay: b.N rows (1 KiB request body each) wait in the
// spool in segments of 10 000, as after a ClickHouse outage; a new writer
// replays them into the real ClickHouse. It reports rows/s from the
// writer's start until the spool is empty and every row is in the table.
func BenchmarkSpoolReplay(b *testing.B) {
	addr := testenv.ClickHouse(b)
	db := testenv.ClickHouseDatabase(b, addr)
	cfg := testConfig(addr, db)
	cfg.BatchRows = 10000
	cfg.FlushInterval = 1e9
	cfg.SpoolMaxBytes = 1 << 32
	dataDir := b.TempDir()
	w, err := New(context.Background(), cfg, dataDir, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil { // migrate outside the timing
		b.Fatal(err)
	}
	w.Close(context.Background())

	sp, err := openSpool(dataDir+"/history/spool", 0)
	if err != nil {
		b.Fatal(err)
	}
	for left := b.N; left > 0; {
		rows := spoolRows(min(left, 10000))
		if err := sp.write(rows, false); err != nil {
			b.Fatal(err)
		}
		left -= len(rows)
	}

	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU(b)
	w, err = New(context.Background(), cfg, dataDir, "")
	if err != nil {
		b.Fatal(err)
	}
	for w.Flush(context.Background()) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	w.Close(context.Background())
	conn := testenv.ClickHouseConn(b, addr)
	if total, _ := rowCounts(b, conn, db); total != uint64(b.N) {
		b.Fatalf("rows in ClickHouse = %d; want %d", total, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/row")
}

// BenchmarkSpoolWrite: b.N rows (1 KiB request body each) written to the
// spool in segments of 1 000 (encode, write, fsync, rename), as while
// ClickHouse is down. It reports the process's CPU per row.
func BenchmarkSpoolWrite(b *testing.B) {
	sp, err := openSpool(b.TempDir(), 0)
	if err != nil {
		b.Fatal(err)
	}
	rows := spoolRows(1000)
	b.ResetTimer()
	cpu0 := processCPU(b)
	for left := b.N; left > 0; left -= len(rows) {
		if err := sp.write(rows[:min(left, len(rows))], false); err != nil {
			b.Fatal(err)
		}
	}
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/row")
}

// processCPU is the user and system CPU time of the test process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
