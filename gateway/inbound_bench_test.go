package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/bitrix24"
	"github.com/hookgate/hookgate/providers/stripe"
	"github.com/hookgate/hookgate/vault"
)

// BenchmarkInbound runs the whole inbound path in process, without the
// network: the Fiber handler, the real provider, the file secret store, an
// embedded JetStream (every 200 is a stored message) and the history writer
// (NDJSON files; its Record runs on the request path as in serve). Its
// sub-benchmarks are the providers: bitrix24 (the ~430 B form of
// scripts/bench.sh) and stripe-2k (a 2 KiB JSON event, signed per request,
// read for its "type" and "id"). Besides ns/op (wall time) each reports
// cpu-ns/op, the process's CPU time per request. Concurrency is 32 goroutines per CPU,
// like the 64 connections of scripts/bench.sh on 2 cores. Profile it with
//
//	go test ./gateway/ -run '^$' -bench Inbound -benchmem -cpuprofile cpu.out -memprofile mem.out -mutexprofile mutex.out
func BenchmarkInbound(b *testing.B) {
	const token = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
	const stripeSecret = "whsec_9pVd3kq0Zc6bXhJt1Ym2Lr8Nw4Fs7Ga5"
	dir := b.TempDir()
	secrets := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(secrets, []byte("bench/b24:\n  token: "+token+"\nbench/stripe:\n  token: "+stripeSecret+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	store, err := vault.New(ctx, config.Secrets{Backend: "file", File: secrets})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	cfg := config.Default()
	cfg.Bus.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	bus, err := events.Open(ctx, cfg.Bus, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	hist, err := history.New(ctx, cfg.History, dir, "", history.WithRedact(store.Redact))
	if err != nil {
		b.Fatal(err)
	}
	hctx, hstop := context.WithCancel(ctx)
	hdone := make(chan struct{})
	go func() { defer close(hdone); hist.Run(hctx) }()
	defer func() { hstop(); <-hdone; hist.Close(ctx) }()

	reg := providers.NewRegistry()
	reg.Register("bitrix24", bitrix24.Constructor)
	reg.Register("stripe", stripe.Constructor)
	gw, err := gateway.New(cfg.Server, []config.Source{
		{ID: "b24", Provider: "bitrix24", Secret: "bench/b24"},
		{ID: "stripe", Provider: "stripe", Secret: "bench/stripe"},
	}, gateway.Deps{Registry: reg, Secrets: store, Bus: bus, Recorder: hist})
	if err != nil {
		b.Fatal(err)
	}
	handler := gw.App().Handler()
	var seq atomic.Uint64
	seq.Store(uint64(time.Now().UnixMicro()))

	const auth = "&auth%5Bdomain%5D=some-domain.bitrix24.com" +
		"&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F" +
		"&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F" +
		"&auth%5Bmember_id%5D=d897063e1ce7c5eb9f04b9751eef5915" +
		"&auth%5Bapplication_token%5D=" + token
	b.Run("bitrix24", func(b *testing.B) {
		benchInbound(b, handler, func(rc *fasthttp.RequestCtx, body []byte) []byte {
			body = append(body[:0], "event=ONCRMDEALUPDATE&event_handler_id=975&data%5BFIELDS%5D%5BID%5D="...)
			body = strconv.AppendUint(body, seq.Add(1), 10)
			body = append(body, "&ts="...)
			body = strconv.AppendInt(body, time.Now().Unix(), 10)
			body = append(body, auth...)
			rc.Request.Header.SetMethod(fasthttp.MethodPost)
			rc.Request.SetRequestURI("http://127.0.0.1/webhook/b24")
			rc.Request.Header.SetContentType("application/x-www-form-urlencoded")
			rc.Request.Header.Set("User-Agent", "Bitrix24 Webhook Engine")
			rc.Request.SetBody(body)
			return body
		})
	})

	// A Stripe event as Stripe sends it: "id" first, "type" last, the
	// object in between, padded to about 2 KiB.
	lines := `"lines":{"object":"list","data":[` + strings.Repeat(`{"id":"il_1NpXfJ2eZvKYlo2C","object":"line_item","amount":2000,"currency":"usd","description":"1 × Gold plan (at $20.00 / month)","period":{"end":1735689600,"start":1733011200},"quantity":1},`, 7)
	lines = strings.TrimSuffix(lines, ",") + `]}`
	b.Run("stripe-2k", func(b *testing.B) {
		benchInbound(b, handler, func(rc *fasthttp.RequestCtx, body []byte) []byte {
			body = append(body[:0], `{"id":"evt_`...)
			body = strconv.AppendUint(body, seq.Add(1), 10)
			body = append(body, `","object":"event","api_version":"2024-06-20","created":`...)
			now := time.Now()
			body = strconv.AppendInt(body, now.Unix(), 10)
			body = append(body, `,"data":{"object":{"id":"in_1NpXfJ2eZvKYlo2C","object":"invoice","amount_due":14000,"currency":"usd","customer":"cus_NffrFeUfNV2Hib","status":"paid",`...)
			body = append(body, lines...)
			body = append(body, `}},"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"invoice.paid"}`...)
			rc.Request.Header.SetMethod(fasthttp.MethodPost)
			rc.Request.SetRequestURI("http://127.0.0.1/webhook/stripe")
			rc.Request.Header.SetContentType("application/json; charset=utf-8")
			rc.Request.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
			rc.Request.Header.Set(stripe.HeaderSignature, stripe.Sign(stripeSecret, now, body))
			rc.Request.SetBody(body)
			return body
		})
	})
}

// benchInbound sends requests built by fill (which gets a reset request
// and a buffer to reuse, and returns the buffer) through handler, 32
// goroutines per CPU, and fails if any is not answered 200.
func benchInbound(b *testing.B, handler fasthttp.RequestHandler, fill func(rc *fasthttp.RequestCtx, body []byte) []byte) {
	var failed atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		var rc fasthttp.RequestCtx
		var body []byte
		for pb.Next() {
			rc.Request.Reset()
			rc.Response.Reset()
			body = fill(&rc, body)
			handler(&rc)
			if rc.Response.StatusCode() != fasthttp.StatusOK {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests not answered 200", n)
	}
}

// processCPU returns the user and system CPU time of the whole process
// (the handlers, JetStream, the history writer, the garbage collector):
// per request, it moves less than ns/op when other work shares the
// machine, since time spent waiting for a core is not counted.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
