package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cmdBurst sends a burst of large bodies and follows the server's memory:
// n requests of size bytes each on c connections at once, then RSS every
// 500 ms until it is back under -settle-mb or -watch ends (issue 14's
// budget: 300 x 1 MiB on 32 connections peaks under 400 MB and is back
// under 200 MB within 2 minutes).
//
//	loadbench burst -url http://127.0.0.1:PORT/webhook/ci?token=T -pid PID [-n 300 -c 32 -size 1048576]
func cmdBurst(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadbench burst", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "webhook URL taking a JSON body (token in the query)")
	pid := fs.String("pid", "", "the server's process id (for /proc)")
	n := fs.Int("n", 300, "requests")
	c := fs.Int("c", 32, "connections")
	size := fs.Int("size", 1<<20, "body size in bytes")
	form := fs.Int("form-fields", 0, "send urlencoded forms of this many fields instead of JSON")
	watch := fs.Duration("watch", 2*time.Minute, "how long to follow RSS after the burst")
	settle := fs.Int64("settle-mb", 200, "stop watching once RSS is under this")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *url == "" || *pid == "" {
		return errors.New("burst: -url and -pid are required")
	}
	if err := resetPeakRSS(*pid); err != nil {
		fmt.Fprintln(stderr, "burst: cannot reset VmHWM (peak is since start):", err)
	}
	idle, _ := memKB(*pid, "VmRSS")
	body := func(i int) (string, string) {
		if *form > 0 {
			var b strings.Builder
			for f := range *form {
				fmt.Fprintf(&b, "f%d=%d&", f, i)
			}
			return b.String() + "event=E", "application/x-www-form-urlencoded"
		}
		pad := strings.Repeat("x", max(*size-64, 0))
		return fmt.Sprintf(`{"seq":%d,"run":%d,"pad":"%s"}`, i, time.Now().UnixNano(), pad), "application/json"
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}, Timeout: time.Minute}
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var peakDuring int64
	stop := make(chan struct{})
	go func() { // RSS during the burst
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if kb, err := memKB(*pid, "VmRSS"); err == nil && kb > atomic.LoadInt64(&peakDuring) {
					atomic.StoreInt64(&peakDuring, kb)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > *n || ctx.Err() != nil {
					return
				}
				b, ct := body(i)
				resp, err := client.Post(*url, ct, strings.NewReader(b))
				code := -1
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	hwm, _ := memKB(*pid, "VmHWM")
	first, _ := body(1)
	fmt.Fprintf(stdout, "burst: %d requests of %d bytes on %d connections in %v; answers %v\n", *n, len(first), *c, took.Round(time.Millisecond), codes)
	fmt.Fprintf(stdout, "burst: RSS idle %d MB, peak %d MB (VmHWM %d MB)\n", idle/1024, max(atomic.LoadInt64(&peakDuring), hwm)/1024, hwm/1024)
	end := time.Now().Add(*watch)
	for {
		kb, err := memKB(*pid, "VmRSS")
		if err != nil {
			return err
		}
		if kb/1024 < *settle {
			fmt.Fprintf(stdout, "burst: RSS %d MB, under %d MB %v after the burst\n", kb/1024, *settle, time.Since(start.Add(took)).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(end) {
			fmt.Fprintf(stdout, "burst: RSS still %d MB %v after the burst (want under %d MB)\n", kb/1024, *watch, *settle)
			return exitError(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
