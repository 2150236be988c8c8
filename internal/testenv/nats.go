package testenv

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// NATSServer starts a JetStream nats-server (the binary of EnvNATSBin,
// which the test script sets) on a free loopback port with its store in a
// temporary directory, waits until it listens and returns its URL. The
// test fails when the binary is missing; the server stops with the test.
func NATSServer(t testing.TB) string {
	t.Helper()
	bin := Require(t, EnvNATSBin, "nats-server")
	port := FreePort(t)
	StartProcess(t, bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return "nats://" + addr
}
