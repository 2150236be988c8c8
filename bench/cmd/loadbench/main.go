// Command loadbench is hookgate's load generator and the checks around it
// (docs/performance.md; scripts/bench.sh runs it).
//
//	loadbench run    -url http://127.0.0.1:PORT -scenario bitrix24 -pid PID -label hookgate -out results.jsonl
//	loadbench verify -results results.jsonl -label hookgate -nats nats://... -clickhouse 127.0.0.1:9000
//	loadbench report -results results.jsonl [-md]
//	loadbench burst  -url http://127.0.0.1:PORT/webhook/ci?token=T -pid PID (large bodies, RSS after)
//
// run drives one server with a fixed number of keep-alive connections, each
// a closed loop (a new request as soon as the answer is in), for a warm-up
// and then a measured window, both bounded in time and in count. Every
// request is distinct (see scenario). It appends one JSON line of results:
// answered and accepted requests per second, latency percentiles of the
// measured window, the server's CPU seconds per 10k requests and peak RSS
// (from /proc), and the generator's own CPU.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: loadbench run|verify|report|burst|scenarios [flags]  (-h for flags)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "burst":
		return cmdBurst(ctx, args[1:], stdout, stderr)
	case "scenarios":
		sc := scenarios(DefaultSecrets)
		names := make([]string, 0, len(sc))
		for n := range sc {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stdout, "%-20s %s\n", n, sc[n].desc)
		}
		return nil
	}
	fmt.Fprint(stderr, usage)
	return exitError(2)
}

// Result is one run against one server: a line of the results file.
type Result struct {
	Label    string    `json:"label"`
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Conns    int       `json:"conns"`
	WindowS  float64   `json:"window_s"` // measured window

	// measured window
	Requests    int64          `json:"requests"` // answered (any status)
	Accepted    int64          `json:"accepted"` // 200 {"status":"accepted"}
	Duplicate   int64          `json:"duplicate"`
	Status      map[string]int `json:"status"`
	Errors      int64          `json:"errors"` // transport errors and timeouts
	FirstError  string         `json:"first_error,omitempty"`
	RPS         float64        `json:"rps"`
	AcceptedRPS float64        `json:"accepted_rps"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	P999ms      float64        `json:"p999_ms"`
	MaxMs       float64        `json:"max_ms"`

	ServerCPUPer10k float64 `json:"server_cpu_s_per_10k"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
	PeakRSSScope    string  `json:"peak_rss_scope"` // "scenario" or "process" (reset failed)
	AuxCPUPer10k    float64 `json:"aux_cpu_s_per_10k,omitempty"`
	GenCPUPer10k    float64 `json:"gen_cpu_s_per_10k"`

	// the whole run, warm-up included: what the server must have stored
	// and recorded
	TotalAnswered  int64 `json:"total_answered"`
	TotalAccepted  int64 `json:"total_accepted"`
	TotalDuplicate int64 `json:"total_duplicate"`
	TotalErrors    int64 `json:"total_errors"`

	// fsync and fdatasync calls of the server's processes during the whole
	// run (warm-up included), when counted (-fsyncs): per stored message,
	// Fsyncs / TotalAccepted
	Fsyncs        int64 `json:"fsyncs,omitempty"`
	FsyncsCounted bool  `json:"fsyncs_counted,omitempty"`
}

// FsyncsPerMsg is the fsyncs per stored message of the run, or -1 when
// they were not counted or nothing was stored.
func (r *Result) FsyncsPerMsg() float64 {
	if !r.FsyncsCounted || r.TotalAccepted == 0 {
		return -1
	}
	return float64(r.Fsyncs) / float64(r.TotalAccepted)
}

// fsyncNote formats the fsyncs per stored message: "0.064 (1 per 15.6)".
func fsyncNote(r *Result) string {
	f := r.FsyncsPerMsg()
	switch {
	case f < 0:
		return ""
	case r.Fsyncs == 0:
		return fmt.Sprintf("  fsyncs/msg 0 (0 for %d)", r.TotalAccepted)
	case f >= 1:
		return fmt.Sprintf("  fsyncs/msg %.3f", f)
	case f < 0.01:
		return fmt.Sprintf("  fsyncs/msg %.2g (1 per %.0f)", f, 1/f)
	}
	return fmt.Sprintf("  fsyncs/msg %.3f (1 per %.1f)", f, 1/f)
}

func readResults(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Result
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func appendResult(path string, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
