package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCountFsyncs(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	b := filepath.Join(dir, "b.txt")
	// strace -f output: calls, an interrupted call and its resumption
	// (one call), a failed call, other lines
	if err := os.WriteFile(a, []byte(strings.Join([]string{
		`1167  fsync(3)                          = 0`,
		`1168  fsync(7 <unfinished ...>`,
		`1169  fdatasync(9)                      = 0`,
		`1168  <... fsync resumed>)              = 0`,
		`1170  fsync(11)                         = -1 EIO (Input/output error)`,
		`1171  +++ exited with 0 +++`,
		``,
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("42 fdatasync(4) = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// perf stat -I 100 -x, output: counts per interval and event
	c := filepath.Join(dir, "c.txt")
	if err := os.WriteFile(c, []byte(strings.Join([]string{
		`# started on Sun Nov 29 17:42:13 2026`,
		``,
		`     0.100234489,12,,syscalls:sys_enter_fsync,76304063,100.00,,`,
		`     0.100234489,3,,syscalls:sys_enter_fdatasync,76304063,100.00,,`,
		`     0.200497902,<not counted>,,syscalls:sys_enter_fsync,0,100.00,,`,
		`     0.200497902,<not counted>,,syscalls:sys_enter_fdatasync,0,100.00,,`,
		`     0.300718926,7,,syscalls:sys_enter_fsync,70432808,100.00,,`,
		`     0.300718926,100,,syscalls:sys_enter_fsyncx,70432808,100.00,,`,
		``,
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := countFsyncs([]string{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if n != 27 {
		t.Errorf("countFsyncs = %d; want 27 (4 calls in a, 1 in b, 12+3+7 in c)", n)
	}
	if n, err := countFsyncs(nil); err != nil || n != 0 {
		t.Errorf("countFsyncs(nil) = %d, %v; want 0, nil", n, err)
	}
	if _, err := countFsyncs([]string{a, filepath.Join(dir, "missing.txt")}); err == nil {
		t.Error("a missing file was counted as none; want an error")
	}
}

func TestFsyncNote(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{TotalAccepted: 100}, ""},
		{Result{TotalAccepted: 0, FsyncsCounted: true}, ""},
		{Result{TotalAccepted: 34145, FsyncsCounted: true}, "  fsyncs/msg 0 (0 for 34145)"},
		{Result{TotalAccepted: 8507, Fsyncs: 545, FsyncsCounted: true}, "  fsyncs/msg 0.064 (1 per 15.6)"},
		{Result{TotalAccepted: 100, Fsyncs: 300, FsyncsCounted: true}, "  fsyncs/msg 3.000"},
		{Result{TotalAccepted: 7862, Fsyncs: 3, FsyncsCounted: true}, "  fsyncs/msg 0.00038 (1 per 2621)"},
	} {
		if got := fsyncNote(&tc.r); got != tc.want {
			t.Errorf("fsyncNote(%d fsyncs, %d accepted, counted %v) = %q; want %q",
				tc.r.Fsyncs, tc.r.TotalAccepted, tc.r.FsyncsCounted, got, tc.want)
		}
	}
}

func TestCPUSecondsSums(t *testing.T) {
	one, err := cpuSeconds("self")
	if err != nil {
		t.Fatal(err)
	}
	two, err := cpuSeconds("self,self")
	if err != nil {
		t.Fatal(err)
	}
	if two < 2*one {
		t.Errorf("cpuSeconds(self,self) = %v; want at least twice cpuSeconds(self) = %v", two, one)
	}
	if _, err := cpuSeconds("self,0"); err == nil {
		t.Error("cpuSeconds with a bad pid in the list: no error")
	}
}
