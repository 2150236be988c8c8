package events_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// BenchmarkPublish stores ~1.6 KB events from 32 goroutines per CPU and
// waits for each acknowledgement, as the gateway does.
func BenchmarkPublish(b *testing.B) {
	cfg := config.Default().Bus
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	bus, err := events.Open(context.Background(), cfg, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	data := make([]byte, 1600)
	for i := range data {
		data[i] = 'x'
	}
	var seq atomic.Uint64
	seq.Store(uint64(time.Now().UnixNano()))
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := strconv.FormatUint(seq.Add(1), 10)
			if _, err := bus.Publish(ctx, "hookgate.in.b24.ONCRMDEALUPDATE", id, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
