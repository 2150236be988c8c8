// Command b24sim runs the Bitrix24 REST simulator (outbound/bitrix24test)
// on a TCP address, for demos and manual tests of hookgate's outbound
// client:
//
//	b24sim -listen 127.0.0.1:8091 -user 1 -secret s3cret -deals 1234
//
// It prints the webhook base URL and serves until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "b24sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("b24sim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8091", "address to listen on")
	user := fs.String("user", bitrix24test.DefaultUser, "webhook user id")
	secret := fs.String("secret", bitrix24test.DefaultSecret, "webhook secret (the <secret> path segment)")
	x := fs.Int("rate-x", 50, "leaky bucket capacity (0 = no limit)")
	y := fs.Float64("rate-y", 2, "leaky bucket drain per second")
	opLimit := fs.Duration("op-limit", 480*time.Second, "operating limit per method (0 = off)")
	opWindow := fs.Duration("op-window", 10*time.Minute, "operating limit window")
	latency := fs.Duration("latency", 0, "delay added to every answer")
	deals := fs.Int("deals", 0, "deals to seed")
	contacts := fs.Int("contacts", 0, "contacts to seed")
	leads := fs.Int("leads", 0, "leads to seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return fmt.Errorf("empty -secret")
	}
	sim := bitrix24test.NewServer(
		bitrix24test.WithCredentials(*user, *secret),
		bitrix24test.WithRate(*x, *y),
		bitrix24test.WithOperatingLimit(*opLimit, *opWindow),
		bitrix24test.WithLatency(*latency),
	)
	sim.SeedDeals(*deals)
	sim.SeedContacts(*contacts)
	sim.SeedLeads(*leads)
	return sim.ListenAndServe(ctx, *listen, func(base string) {
		fmt.Fprintf(stdout, "b24sim: portal %s, webhook %s/rest/%s/<secret>/\n", base, base, *user)
	})
}
