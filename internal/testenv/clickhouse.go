package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultClickHouseBin is Debian's clickhouse-server.
const DefaultClickHouseBin = "/usr/sbin/clickhouse-server"

// ClickHouse returns the native-protocol address (127.0.0.1:port) of the
// shared ClickHouse server started by scripts/test.sh. Tests share it: give
// each its own database (ClickHouseDatabase).
func ClickHouse(t testing.TB) string {
	t.Helper()
	return Require(t, EnvClickHouseAddr, "a ClickHouse server (native protocol)")
}

// ClickHouseHTTP returns the HTTP address (127.0.0.1:port) of the shared
// ClickHouse server.
func ClickHouseHTTP(t testing.TB) string {
	t.Helper()
	return Require(t, EnvClickHouseHTTP, "a ClickHouse server (HTTP interface)")
}

// ClickHouseDatabase returns a fresh database name for one test
// (hookgate_test_<random>) and drops that database when the test ends.
func ClickHouseDatabase(t testing.TB, addr string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "hookgate_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 2 * time.Second})
		if err != nil {
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	return name
}

// ClickHouseConn opens a clickhouse-go connection (native protocol, user
// default) to addr, closed when the test ends.
func ClickHouseConn(t testing.TB, addr string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open clickhouse %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ping clickhouse %s: %v", addr, err)
	}
	return conn
}

// ClickHouseHTTPQuery runs query on the HTTP interface at httpAddr with body
// as its data (e.g. rows for INSERT ... FORMAT JSONEachRow) and returns the
// answer. settings are name=value pairs of ClickHouse settings for the
// query (date_time_input_format=best_effort).
func ClickHouseHTTPQuery(httpAddr, query string, body []byte, settings ...string) (string, error) {
	u := "http://" + httpAddr + "/?query=" + url.QueryEscape(query)
	for _, s := range settings {
		name, value, _ := strings.Cut(s, "=")
		u += "&" + url.QueryEscape(name) + "=" + url.QueryEscape(value)
	}
	var resp *http.Response
	var err error
	if body == nil {
		resp, err = http.Get(u)
	} else {
		resp, err = http.Post(u, "application/octet-stream", bytes.NewReader(body))
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(out), fmt.Errorf("clickhouse http %d: %s", resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ClickHouseServer is a private ClickHouse server for one test, for outage
// tests that stop and start it. Its data directory lives as long as the
// test, so data survives Stop and Start.
type ClickHouseServer struct {
	*Process
	tcp, http int
}

// StartClickHouse starts a private clickhouse-server (EnvClickHouseBin,
// default /usr/sbin/clickhouse-server) on free loopback ports in a temp
// directory and waits until it accepts native connections.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: %s needs a private ClickHouse server", t.Name())
	}
	bin := os.Getenv(EnvClickHouseBin)
	if bin == "" {
		bin = DefaultClickHouseBin
	}
	if _, err := os.Stat(bin); err != nil {
		Require(t, EnvClickHouseBin, "clickhouse-server, to start a private server")
		t.Fatalf("clickhouse-server %s: %v", bin, err)
	}
	dir := t.TempDir()
	for _, d := range []string{"tmp", "uf", "fs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tcp, httpPort, inter := FreePort(t), FreePort(t), FreePort(t)
	s := &ClickHouseServer{tcp: tcp, http: httpPort}
	s.Process = StartProcess(t, bin,
		"--config-file=/etc/clickhouse-server/config.xml", "--",
		"--path="+dir+"/", "--tmp_path="+dir+"/tmp/", "--user_files_path="+dir+"/uf/",
		"--format_schema_path="+dir+"/fs/",
		"--logger.log="+dir+"/server.log", "--logger.errorlog="+dir+"/err.log",
		"--listen_host=127.0.0.1",
		"--tcp_port="+strconv.Itoa(tcp), "--http_port="+strconv.Itoa(httpPort),
		"--interserver_http_port="+strconv.Itoa(inter))
	s.wait(t)
	return s
}

func (s *ClickHouseServer) wait(t testing.TB) {
	t.Helper()
	if err := WaitTCP(s.Addr(), 60*time.Second); err != nil {
		t.Fatalf("private clickhouse: %v\n%s", err, s.Log())
	}
	// The port opens before the server answers queries: wait for one.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ClickHouseHTTPQuery(s.HTTPAddr(), "SELECT 1", nil); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("private clickhouse not answering: %v\n%s", err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start (re)starts the server on the same ports and data and waits for it.
func (s *ClickHouseServer) Start() {
	s.t.Helper()
	s.Process.Start()
	s.wait(s.t)
}

// Addr is the native-protocol address.
func (s *ClickHouseServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcp)) }

// HTTPAddr is the HTTP interface's address.
func (s *ClickHouseServer) HTTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.http))
}
