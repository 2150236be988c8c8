// Package testenv gives tests the real servers that scripts/test.sh (the
// README's test command) installs and starts: ClickHouse, Vault, NATS, and
// Node packages for independent implementations.
//
// A test that needs a server calls the function for it. When the server's
// variable is missing the test FAILS, never skips: under the README's test
// command every server is there, so a missing one is a broken environment.
// Only `go test -short` skips them, for a quick run of the unit tests.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables set by scripts/test.sh.
const (
	EnvVaultAddr      = "HOOKGATE_TEST_VAULT_ADDR"      // http://127.0.0.1:port of a dev server
	EnvVaultToken     = "HOOKGATE_TEST_VAULT_TOKEN"     // its root token
	EnvVaultBin       = "HOOKGATE_TEST_VAULT_BIN"       // the vault binary, to start private servers
	EnvClickHouseAddr = "HOOKGATE_TEST_CLICKHOUSE_ADDR" // 127.0.0.1:port, native protocol
	EnvClickHouseHTTP = "HOOKGATE_TEST_CLICKHOUSE_HTTP" // 127.0.0.1:port, HTTP interface
	EnvClickHouseBin  = "HOOKGATE_TEST_CLICKHOUSE_BIN"  // clickhouse-server, to start private servers
	EnvNodePath       = "HOOKGATE_TEST_NODE_PATH"       // node_modules with standardwebhooks, chdb
	EnvNATSBin        = "HOOKGATE_TEST_NATS_BIN"        // nats-server, for external-bus tests
)

// Require returns the value of the environment variable name, failing the
// test when it is unset (skipping only under -short).
func Require(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if testing.Short() {
		t.Skipf("-short: %s needs %s", t.Name(), what)
	}
	t.Fatalf("%s is not set: this test needs %s; run it through the README's test command (scripts/test.sh)", name, what)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts TCP connections or timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Process is a server process started by a test. Stop and Start may be
// called repeatedly (outage tests); the test's cleanup stops it.
type Process struct {
	t       testing.TB
	name    string
	args    []string
	env     []string
	dir     string
	cmd     *exec.Cmd
	logPath string
	exit    *exit // of the running process
}

// exit is one run's end: done is closed once it exited with code.
type exit struct {
	done chan struct{}
	code int
}

// StartProcess starts name with args, its output in a log file under the
// test's temp dir, and registers its stop with t.Cleanup.
func StartProcess(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, nil, name, args...)
}

// StartProcessEnv is StartProcess with extra environment variables
// ("KEY=value") on top of the test's own.
func StartProcessEnv(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, name: name, args: args, env: env, dir: t.TempDir()}
	p.logPath = filepath.Join(p.dir, filepath.Base(name)+".log")
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start (re)starts the process.
func (p *Process) Start() {
	p.t.Helper()
	if p.cmd != nil {
		return
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("log for %s: %v", p.name, err)
	}
	cmd := exec.Command(p.name, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
	e := &exit{done: make(chan struct{})}
	p.exit = e
	go func() {
		cmd.Wait()
		logf.Close()
		e.code = cmd.ProcessState.ExitCode()
		close(e.done)
	}()
}

// Stop stops the process (SIGTERM, then SIGKILL after 10 s) and waits.
func (p *Process) Stop() { p.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the process with SIGKILL and waits.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

func (p *Process) signal(sig syscall.Signal, grace time.Duration) {
	if p.cmd == nil {
		return
	}
	cmd := p.cmd
	p.cmd = nil
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	done := make(chan struct{})
	go func() {
		for {
			if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
				close(done)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-done
}

// Pid is the running process's id (0 when not running).
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Wait waits up to timeout for the process, stopped by other means (a
// signal the test sent), to exit, and returns its exit status.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	if p.cmd == nil {
		return 0, fmt.Errorf("%s is not running", p.name)
	}
	select {
	case <-p.exit.done:
		p.cmd = nil
		return p.exit.code, nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s still running after %v", p.name, timeout)
	}
}

// Log returns what the process wrote so far, for failure messages.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	s := string(b)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}

// Running reports whether the process was started and not stopped.
func (p *Process) Running() bool { return p.cmd != nil }

// Dir is the process's working directory (a test temp dir).
func (p *Process) Dir() string { return p.dir }

// StopWhileStarting runs run with contexts cancelled before it starts and
// at moments early in its start-up, and fails the test unless each run
// returns nil: a stop that comes while it is still setting up is a
// graceful stop too.
func StopWhileStarting(t testing.TB, run func(ctx context.Context) error) {
	t.Helper()
	for _, after := range []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond, 5 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		if after == 0 {
			cancel()
		} else {
			time.AfterFunc(after, cancel)
		}
		done := make(chan error, 1)
		go func() { done <- run(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run stopped %v after its start = %v; want nil", after, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Run stopped %v after its start did not return", after)
		}
		cancel()
	}
}

// Buffer is a bytes.Buffer that a logger on other goroutines and the test
// share: a log sink to search.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
