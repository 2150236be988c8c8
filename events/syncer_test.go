package events_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// TestGroupSyncCoversBlock checks what bus.sync: group rests on: when
// Publish returns, the message is in a block file of the stream's msgs
// directory (the one the syncer fsyncs), not only in the server's memory.
// A nats-server that stopped writing an R1 message in place before its
// PubAck would fail here, not silently lose a power cut's worth of 200s.
func TestGroupSyncCoversBlock(t *testing.T) {
	cfg := config.Default().Bus
	cfg.Sync = "group"
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dir := t.TempDir()
	bus, err := events.Open(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	msgs := filepath.Join(dir, "jetstream", "jetstream", "$G", "streams", cfg.Stream, "msgs")
	// small messages, then 256 KiB ones until the store has moved to new
	// block files several times
	for i := 0; i < 20 || countBlocks(t, msgs) < 4; i++ {
		if i > 400 {
			t.Fatalf("%d block files after %d messages; want 4", countBlocks(t, msgs), i)
		}
		payload := fmt.Appendf(nil, `{"probe":"group-sync-%d-%s"}`, i, t.Name())
		if i >= 20 {
			payload = append(payload, bytes.Repeat([]byte{' '}, 256<<10)...)
		}
		if _, err := bus.Publish(context.Background(), "hookgate.in.b24.PROBE", fmt.Sprintf("probe-%d", i), payload); err != nil {
			t.Fatalf("Publish(%d) = %v", i, err)
		}
		blks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
		found := false
		for _, b := range blks {
			data, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			found = found || bytes.Contains(data, payload[:40])
		}
		if !found {
			t.Fatalf("after Publish(%d) returned, no block file in %s holds the message (blocks %v)", i, msgs, blks)
		}
	}
}

func countBlocks(t *testing.T, dir string) int {
	t.Helper()
	blks, err := filepath.Glob(filepath.Join(dir, "*.blk"))
	if err != nil {
		t.Fatal(err)
	}
	return len(blks)
}
