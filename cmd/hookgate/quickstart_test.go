package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickstartPorts are the fixed ports docs/quickstart.md uses: the gateway,
// its embedded bus, b24sim and the receiver.
var quickstartPorts = []string{"8080", "4222", "8091", "9090"}

// TestQuickstart runs every ```sh block of docs/quickstart.md, in order,
// as one bash script (set -euo pipefail) in a copy of the repository: the
// document's commands and its checks must all pass, so the quickstart
// cannot drift from the code (issue 16).
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binaries and runs docs/quickstart.md")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(root, "docs", "quickstart.md")
	blocks, err := shellBlocks(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "curl", "openssl", "xxd", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("docs/quickstart.md needs %s: %v", tool, err)
		}
	}
	for _, port := range quickstartPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken (%v): docs/quickstart.md listens on the fixed ports %s; stop what holds it",
				port, err, strings.Join(quickstartPorts, ", "))
		}
		ln.Close()
	}

	dir := t.TempDir()
	if err := copyTree(root, dir); err != nil {
		t.Fatalf("copy the repository: %v", err)
	}
	var script strings.Builder
	// Background jobs run in bash's process group (no job control in a
	// script); the trap stops them on any exit, the process-group kill
	// below stops whatever is left.
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -x\n")
	for _, b := range blocks {
		fmt.Fprintf(&script, "\n# docs/quickstart.md:%d\n%s", b.line, b.text)
	}

	timeout := 10 * time.Minute // the first build of the binaries takes minutes on a cold cache
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < timeout {
		timeout = time.Until(d) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = quickstartEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers; an error means none are left
	}
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timed out after %s)", err, timeout)
		}
		t.Fatalf("docs/quickstart.md (%d blocks) failed after %s: %v\n%s%s", len(blocks), elapsed, err, out, logTails(filepath.Join(dir, "qs")))
	}
	t.Logf("docs/quickstart.md: %d blocks passed in %s", len(blocks), elapsed)
}

// block is one ```sh block: its first line number and its text.
type block struct {
	line int
	text string
}

// shellBlocks returns the ```sh blocks of a Markdown file. A block in
// another shell fence (bash, shell, console) would not be run, and a line
// "! cmd" never fails a set -e script: both are errors.
func shellBlocks(path string) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks []block
		cur    *block
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && line == "```sh":
			cur = &block{line: n + 1}
		case cur == nil && (line == "```bash" || line == "```shell" || line == "```console"):
			return nil, fmt.Errorf("%s:%d: a %s block is not run by the test; use ```sh", path, n, strings.TrimPrefix(line, "```"))
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			if strings.HasPrefix(strings.TrimSpace(line), "! ") {
				return nil, fmt.Errorf("%s:%d: %q cannot fail under set -e; write test -z \"$(...)\" instead", path, n, line)
			}
			cur.text += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: unclosed ```sh block", path, cur.line-1)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%s: no ```sh blocks", path)
	}
	return blocks, nil
}

// copyTree copies the repository's files to dst, leaving out version
// control, build output and data the doc would find in the way.
func copyTree(src, dst string) error {
	top := map[string]bool{"bin": true, "data": true, "qs": true} // the doc's and serve's own folders
	anywhere := map[string]bool{".git": true, "node_modules": true, "vault-src": true}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if anywhere[d.Name()] || top[rel] {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
}

// quickstartEnv is the test's environment without HOOKGATE_* variables,
// which would change the config the doc writes.
func quickstartEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// logTails returns the last lines of the logs the doc wrote under dir (the
// gateway's, the receiver's, ...), to tell why a step failed.
func logTails(dir string) string {
	var b strings.Builder
	for _, pattern := range []string{"*.log", "*.err"} {
		files, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			fmt.Fprintf(&b, "\n--- qs/%s (last %d lines)\n%s\n", filepath.Base(f), len(lines), strings.Join(lines, "\n"))
		}
	}
	return b.String()
}
