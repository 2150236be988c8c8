package events_test

import (
	"context"
	"fmt"
	"runtime"
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
	benchmarkPublish(b, config.Default().Bus.Sync, 32)
}

// BenchmarkPublishSync compares the sync policies with 64 publishers (as
// many as the bench's connections), every id distinct. Count the fsyncs
// with perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync
// on the test binary (strace -c -f -e trace=fsync,fdatasync counts the
// same but stops the process at each call: 15-20 % off group's rate)
// (docs/reliability.md).
func BenchmarkPublishSync(b *testing.B) {
	for _, policy := range []string{"interval", "always", "group"} {
		b.Run(policy, func(b *testing.B) {
			benchmarkPublish(b, policy, 64/runtime.GOMAXPROCS(0))
		})
	}
}

func benchmarkPublish(b *testing.B, policy string, parallelism int) {
	cfg := config.Default().Bus
	cfg.Sync = policy
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
	b.SetParallelism(max(parallelism, 1))
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
