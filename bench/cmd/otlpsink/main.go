// Command otlpsink is the local OTLP/HTTP trace receiver of `task bench`
// with BENCH_TRACES=1 (docs/performance.md, "Tracing"): it decodes every
// export (go.opentelemetry.io/proto/otlp), counts exports and spans, and
// prints the counts when it is stopped (SIGTERM, SIGINT) or asked
// (GET /count).
//
//	otlpsink -listen 127.0.0.1:PORT
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4318", "listen address (loopback)")
	flag.Parse()
	var exports, spans, bad atomic.Int64
	ok, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				n += len(ss.GetSpans())
			}
		}
		exports.Add(1)
		spans.Add(int64(n))
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(ok)
	})
	count := func() string {
		return fmt.Sprintf("otlpsink: %d exports, %d spans, %d undecodable", exports.Load(), spans.Load(), bad.Load())
	}
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, count()) })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		fmt.Println(count())
		srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
