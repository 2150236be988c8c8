package events_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// TestEmbeddedBusToken: the embedded bus's client port refuses a client
// without the token written to data_dir/bus.token (mode 0600), and the
// token stays the same across restarts.
func TestEmbeddedBusToken(t *testing.T) {
	cfg := config.Default().Bus
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dir := t.TempDir()
	bus, err := events.Open(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, events.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bus.token = %v, %v; want a file with mode 0600", st, err)
	}
	tok, err := events.ReadToken(dir)
	if err != nil || len(tok) != 64 {
		t.Fatalf("ReadToken = %q, %v; want 64 hex digits", tok, err)
	}
	for name, opts := range map[string][]nats.Option{
		"no token":    nil,
		"wrong token": {nats.Token(tok[:63] + "x")},
		"user, pass":  {nats.UserInfo("hookgate", tok)},
	} {
		if nc, err := nats.Connect("nats://"+cfg.Listen, opts...); err == nil {
			nc.Close()
			t.Errorf("a client with %s connected to the embedded bus; want it refused", name)
		}
	}
	c, err := events.Connect("nats://"+cfg.Listen, events.WithToken(tok))
	if err != nil {
		t.Fatalf("Connect with the token = %v", err)
	}
	c.Close()
	bus.Close()

	// the same token after a restart: CLI commands keep working
	bus, err = events.Open(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if again, err := events.ReadToken(dir); err != nil || again != tok {
		t.Errorf("token after a restart = %q, %v; want the first one", again, err)
	}

	// a token file others can read is refused
	if err := os.Chmod(filepath.Join(dir, events.TokenFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := events.ReadToken(dir); err == nil {
		t.Error("ReadToken of a 0644 file = nil error; want it refused")
	}
}
