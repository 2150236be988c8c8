// Command yardstick is the bare server hookgate's throughput is measured
// against (docs/performance.md): a Fiber handler that reads the request
// body and answers 200 with a small JSON body, doing nothing else. It uses
// the same Fiber version and the same server settings as the gateway.
//
//	yardstick -listen 127.0.0.1:PORT
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "listen address (loopback)")
	flag.Parse()
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             1 << 20, // hookgate's default server.max_body_bytes
		ReadBufferSize:        16 << 10,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		// as hookgate: no multipart pre-parsing before the handler
		DisablePreParseMultipartForm: true,
		CaseSensitive:                true,
	})
	var n atomic.Uint64
	app.Post("/*", func(c *fiber.Ctx) error {
		body := c.Body()
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		b := make([]byte, 0, 64)
		b = append(b, `{"status":"accepted","id":"`...)
		b = strconv.AppendUint(b, n.Add(1), 10)
		b = append(b, `","bytes":`...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, '}')
		return c.Send(b)
	})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		_ = app.ShutdownWithTimeout(5 * time.Second)
	}()
	if err := app.Listen(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "yardstick:", err)
		os.Exit(1)
	}
}
