package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100
// on every Linux architecture Go supports.
const userHZ = 100

// cpuSeconds returns the user+system CPU time of pid (its threads
// included) from /proc/<pid>/stat. pid "self" is this process; a
// comma-separated list sums its processes.
func cpuSeconds(pids string) (float64, error) {
	var sum float64
	for _, pid := range strings.Split(pids, ",") {
		s, err := cpuSecondsOf(pid)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

func cpuSecondsOf(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// the command name (field 2) is in parentheses and may hold spaces
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%s/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / userHZ, nil
}

// memKB returns a field of /proc/<pid>/status in kB (VmHWM: peak RSS,
// VmRSS: current RSS).
func memKB(pid, field string) (int64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("/proc/%s/status: no %s", pid, field)
}

// resetPeakRSS sets VmHWM back to the current RSS (proc(5): writing 5 to
// clear_refs), so that each scenario reports its own peak. It needs to own
// the process (or root); on failure the peak is the process lifetime's.
func resetPeakRSS(pid string) error {
	return os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0)
}

// countFsyncs counts the fsync and fdatasync calls recorded in the files
// of a counter that ran the server, in either of two formats:
//
//   - perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync
//     -I 100 -x, -o FILE: one CSV line per event and interval, the count
//     in the second field ("<not counted>" when the process ran no
//     thread in it): the counts are summed;
//   - strace -f -e trace=fsync,fdatasync -o FILE: one line per call that
//     starts it. A call that another thread's line interrupted is printed
//     as "fsync(5 <unfinished ...>" and later "<... fsync resumed>) = 0":
//     the first is counted, the second is not.
//
// A missing file is an error: the count would silently be short.
func countFsyncs(files []string) (int64, error) {
	var n int64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return 0, fmt.Errorf("fsync count: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n += fsyncsIn(sc.Text())
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("fsync count %s: %w", name, err)
		}
	}
	return n, nil
}

func fsyncsIn(line string) int64 {
	if strings.Contains(line, "syscalls:sys_enter_f") {
		f := strings.Split(line, ",")
		if len(f) < 4 || (f[3] != "syscalls:sys_enter_fsync" && f[3] != "syscalls:sys_enter_fdatasync") {
			return 0
		}
		c, err := strconv.ParseInt(strings.TrimSpace(f[1]), 10, 64)
		if err != nil {
			return 0 // <not counted>
		}
		return c
	}
	if strings.Contains(line, "fsync(") || strings.Contains(line, "fdatasync(") {
		return 1
	}
	return 0
}
