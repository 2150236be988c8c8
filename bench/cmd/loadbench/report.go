package main

import (
	"fmt"
	"io"
	"strings"
)

// cmdReport prints the results file as a table: per scenario, each server's
// figures and the ratio hookgate / yardstick. Runs of the same label and
// scenario are listed in order; the ratio pairs each hookgate run with the
// yardstick run just before it (the same minute of the same machine).
func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	results := fs.String("results", "", "results file written by run")
	md := fs.Bool("md", false, "Markdown table")
	base := fs.String("base", "yardstick", "the label ratios are taken against")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	rs, err := readResults(*results)
	if err != nil {
		return err
	}
	cols := []string{"scenario", "server", "req/s", "accepted/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU s/10k", "peak RSS MB", "gen CPU s/10k", "non-200", "ratio acc/s", "fsyncs/msg"}
	var rows [][]string
	last := map[string]*Result{} // scenario -> last base run
	for i := range rs {
		r := &rs[i]
		ratio := ""
		if r.Label == *base {
			last[r.Scenario] = r
		} else if b := last[r.Scenario]; b != nil && b.AcceptedRPS > 0 {
			ratio = fmt.Sprintf("%.2f×", r.AcceptedRPS/b.AcceptedRPS)
		}
		non200 := r.Requests - int64(r.Status["200"])
		cpu := fmt.Sprintf("%.2f", r.ServerCPUPer10k)
		if r.AuxCPUPer10k > 0 {
			cpu += fmt.Sprintf(" (+CH %.2f)", r.AuxCPUPer10k)
		}
		rss := fmt.Sprintf("%.0f", r.PeakRSSMB)
		if r.PeakRSSScope == "process" {
			rss += "*"
		}
		rows = append(rows, []string{
			r.Scenario, r.Label,
			fmt.Sprintf("%.0f", r.RPS), fmt.Sprintf("%.0f", r.AcceptedRPS),
			fmt.Sprintf("%.2f", r.P50ms), fmt.Sprintf("%.2f", r.P99ms), fmt.Sprintf("%.2f", r.P999ms),
			cpu, rss, fmt.Sprintf("%.2f", r.GenCPUPer10k),
			fmt.Sprintf("%d", non200+r.Errors), ratio, strings.TrimPrefix(fsyncNote(r), "  fsyncs/msg "),
		})
	}
	if *md {
		fmt.Fprintln(stdout, "| "+strings.Join(cols, " | ")+" |")
		fmt.Fprintln(stdout, "|"+strings.Repeat(" --- |", len(cols)))
		for _, row := range rows {
			fmt.Fprintln(stdout, "| "+strings.Join(row, " | ")+" |")
		}
		return nil
	}
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = len([]rune(c))
	}
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		for i, c := range row {
			pad := width[i] - len([]rune(c))
			if i < 2 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
			b.WriteString("  ")
		}
		fmt.Fprintln(stdout, strings.TrimRight(b.String(), " "))
	}
	line(cols)
	for _, row := range rows {
		line(row)
	}
	fmt.Fprintln(stdout, "CPU s/10k: server CPU seconds per 10,000 answered requests (+CH: ClickHouse's, same machine; r3: the gateway and its three nats-servers); * peak RSS of the process lifetime")
	fmt.Fprintln(stdout, "fsyncs/msg: fsync+fdatasync calls of the server's processes (perf stat or strace) over the whole run, warm-up included, per 200 accepted (each a stored message)")
	return nil
}
