package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	target := fs.String("url", "", "server base URL (http://127.0.0.1:PORT); loopback only")
	name := fs.String("scenario", "bitrix24", "scenario (loadbench scenarios lists them)")
	label := fs.String("label", "", "server label in the results (hookgate, yardstick)")
	conns := fs.Int("c", 64, "connections (one closed-loop worker each)")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up before the measured window (counted in totals, not in stats)")
	window := fs.Duration("d", 10*time.Second, "measured window")
	maxN := fs.Int64("n", 2_000_000, "at most this many requests in the whole run")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	pid := fs.String("pid", "", "server process id, for CPU and peak RSS; a comma-separated list sums the CPU of all (a gateway and its external bus), the peak RSS is the first's")
	auxPid := fs.String("aux-pid", "", "another process whose CPU to report (ClickHouse)")
	out := fs.String("out", "", "append the result as a JSON line to this file")
	seqStart := fs.Uint64("seq", 0, "first sequence number (0: microseconds since the epoch, so that runs never repeat a delivery)")
	fsyncFiles := fs.String("fsyncs", "", "comma-separated output files of fsync counters of the server's processes (perf stat -I 100 -x, on syscalls:sys_enter_fsync and sys_enter_fdatasync, or strace -f -e trace=fsync,fdatasync): the calls they record during the whole run, warm-up included, are counted")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port", *target)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return fmt.Errorf("-url %q: loopback only", *target)
	}
	sc, ok := scenarios(DefaultSecrets)[*name]
	if !ok {
		return fmt.Errorf("unknown scenario %q", *name)
	}
	if *seqStart == 0 {
		*seqStart = uint64(time.Now().UnixMicro())
	}
	hc := &fasthttp.HostClient{
		Addr:                u.Host,
		MaxConns:            *conns,
		MaxConnWaitTimeout:  *timeout,
		ReadTimeout:         *timeout,
		WriteTimeout:        *timeout,
		MaxIdleConnDuration: time.Minute,
		ReadBufferSize:      16 << 10,
	}
	defer hc.CloseIdleConnections()

	var files []string
	if *fsyncFiles != "" {
		files = strings.Split(*fsyncFiles, ",")
	}
	fsync0, ferr := countFsyncs(files)
	if ferr != nil {
		return ferr
	}
	mainPid, _, _ := strings.Cut(*pid, ",")

	var (
		seq       atomic.Uint64
		started   atomic.Int64
		measuring atomic.Bool
		stop      atomic.Bool
	)
	seq.Store(*seqStart)
	workers := make([]*worker, *conns)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range workers {
		w := &worker{status: map[int]int64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var buf []byte
			for !stop.Load() && started.Add(1) <= *maxN {
				n := seq.Add(1)
				buf = sc.build(req, n, buf)
				req.URI().SetHost(u.Host)
				m := measuring.Load()
				t0 := time.Now()
				err := hc.DoTimeout(req, resp, *timeout)
				w.record(m, err, resp, time.Since(t0))
			}
		}()
	}

	// warm-up, then the measured window; both end early when -n is spent
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-done:
			return false
		case <-ctx.Done():
			return false
		}
	}
	wait(*warmup)
	cpu0, _ := cpuSeconds(*pid)
	aux0, _ := cpuSeconds(*auxPid)
	gen0, _ := cpuSeconds("self")
	rssScope := "scenario"
	if *pid == "" || resetPeakRSS(mainPid) != nil {
		rssScope = "process"
	}
	measuring.Store(true)
	t0 := time.Now()
	wait(*window)
	measuring.Store(false)
	elapsed := time.Since(t0).Seconds()
	cpu1, cerr := cpuSeconds(*pid)
	aux1, aerr := cpuSeconds(*auxPid)
	gen1, _ := cpuSeconds("self")
	stop.Store(true)
	<-done // in-flight requests finish (bounded by -timeout)
	// every answer is in, so are the fsyncs that released the 200s: strace
	// prints a call before the thread goes on, perf stat within its
	// interval (-I 100): wait for that
	if files != nil {
		time.Sleep(fsyncSettle)
	}
	fsync1, ferr := countFsyncs(files)
	if ferr != nil {
		return ferr
	}

	r := &Result{Label: *label, Scenario: sc.name, Started: begin.UTC(), Conns: *conns, WindowS: elapsed, Status: map[string]int{}}
	var lats []time.Duration
	for _, w := range workers {
		r.Requests += w.requests
		r.Accepted += w.accepted
		r.Duplicate += w.duplicate
		r.Errors += w.errors
		r.TotalAnswered += w.totalAnswered
		r.TotalAccepted += w.totalAccepted
		r.TotalDuplicate += w.totalDuplicate
		r.TotalErrors += w.totalErrors
		for s, n := range w.status {
			r.Status[strconv.Itoa(s)] += int(n)
		}
		lats = append(lats, w.lats...)
		if w.firstErr != nil && r.FirstError == "" {
			r.FirstError = w.firstErr.Error()
		}
	}
	slices.Sort(lats)
	r.RPS = float64(r.Requests) / elapsed
	r.AcceptedRPS = float64(r.Accepted) / elapsed
	r.P50ms, r.P99ms, r.P999ms = pct(lats, 0.50), pct(lats, 0.99), pct(lats, 0.999)
	if len(lats) > 0 {
		r.MaxMs = ms(lats[len(lats)-1])
	}
	per10k := func(d float64) float64 {
		if r.Requests == 0 {
			return 0
		}
		return d / float64(r.Requests) * 10000
	}
	if *pid != "" && cerr == nil {
		r.ServerCPUPer10k = per10k(cpu1 - cpu0)
		if kb, err := memKB(mainPid, "VmHWM"); err == nil {
			r.PeakRSSMB = float64(kb) / 1024
		}
		r.PeakRSSScope = rssScope
	}
	if *auxPid != "" && aerr == nil {
		r.AuxCPUPer10k = per10k(aux1 - aux0)
	}
	r.GenCPUPer10k = per10k(gen1 - gen0)
	if files != nil {
		r.Fsyncs = fsync1 - fsync0
		r.FsyncsCounted = true
	}
	fmt.Fprintf(stdout, "%-10s %-19s %8.0f req/s %8.0f accepted/s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  cpu %.2f s/10k  peak RSS %.0f MB  status %v  errors %d%s\n",
		r.Label, r.Scenario, r.RPS, r.AcceptedRPS, r.P50ms, r.P99ms, r.P999ms, r.ServerCPUPer10k, r.PeakRSSMB, r.Status, r.Errors, fsyncNote(r))
	if *out != "" {
		if err := appendResult(*out, r); err != nil {
			return err
		}
	}
	return nil
}

// fsyncSettle is how long the run waits after its last answer before it
// reads the fsync counts: more than perf stat's print interval (-I 100).
const fsyncSettle = 300 * time.Millisecond

// worker is one connection's closed loop and what it saw.
type worker struct {
	lats                                  []time.Duration
	status                                map[int]int64
	requests, accepted, duplicate, errors int64
	totalAnswered, totalAccepted          int64
	totalDuplicate, totalErrors           int64
	firstErr                              error
}

var (
	accepted  = []byte(`"status":"accepted"`)
	duplicate = []byte(`"status":"duplicate"`)
)

func (w *worker) record(measured bool, err error, resp *fasthttp.Response, d time.Duration) {
	if err != nil {
		if w.firstErr == nil {
			w.firstErr = err
		}
		w.totalErrors++
		if measured {
			w.errors++
		}
		return
	}
	code := resp.StatusCode()
	acc, dup := false, false
	if code == fasthttp.StatusOK {
		body := resp.Body()
		acc = bytes.Contains(body, accepted)
		dup = !acc && bytes.Contains(body, duplicate)
	}
	w.totalAnswered++
	if acc {
		w.totalAccepted++
	}
	if dup {
		w.totalDuplicate++
	}
	if !measured {
		return
	}
	w.requests++
	w.status[code]++
	if acc {
		w.accepted++
	}
	if dup {
		w.duplicate++
	}
	w.lats = append(w.lats, d)
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return ms(sorted[max(0, min(i, len(sorted)-1))])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
