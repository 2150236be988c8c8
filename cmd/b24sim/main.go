// Command b24sim runs the Bitrix24 REST simulator (outbound/bitrix24test)
// on a TCP address, for demos and manual tests of hookgate's outbound
// client:
//
//	b24sim -listen 127.0.0.1:8091 -user 1 -secret s3cret
//
// It starts with a small demo CRM (three deals, contacts and leads; -seed=false
// starts empty), prints the webhook base URL and serves until interrupted.
// b24sim -help prints the description and the flags.
package main

import (
	"context"
	"errors"
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
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var code exitCode
	switch {
	case errors.As(err, &code):
		os.Exit(int(code))
	case err != nil:
		fmt.Fprintln(os.Stderr, "b24sim:", err)
		os.Exit(1)
	}
}

// exitCode is an exit status for a run that already said why.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const description = `b24sim: a Bitrix24 portal for trying and testing hookgate, in memory.

It answers REST calls on the incoming-webhook URL
<base>/rest/<user>/<secret>/<method>.json as a portal does: crm.deal.*,
crm.contact.* and crm.lead.* (get, list with filter/select/order/start,
add, update) and batch, with Bitrix24's answers and error codes. Like a
real portal it enforces the leaky bucket
(-rate-x requests at once, draining -rate-y per second; past it: 503
QUERY_LIMIT_EXCEEDED) and the per-method operating limit (429
OPERATION_TIME_LIMIT). A batch (up to 50 commands) counts once towards
the bucket; each of its commands counts towards its own method's
operating limit and has its own result, result_error and result_time.
Nothing is kept when it stops.

By default it starts with a demo CRM: deals 1-3, contacts 1-3 and leads
1-3. Point a hookgate portal at it and call it:

  b24sim -listen 127.0.0.1:8091
  # hookgate.yaml:  portals: [{id: main, base_url: http://127.0.0.1:8091, user_id: 1, secret: b24sim/webhook}]
  # secrets.yaml:   b24sim/webhook: {token: ` + bitrix24test.DefaultSecret + `}
  hookgate call main crm.deal.get id=1

usage: b24sim [flags]

flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("b24sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8091", "address to listen on")
	user := fs.String("user", bitrix24test.DefaultUser, "webhook user id (the <user> path segment)")
	secret := fs.String("secret", bitrix24test.DefaultSecret, "webhook secret (the <secret> path segment)")
	x := fs.Int("rate-x", 50, "leaky bucket capacity: requests at once (0 = no limit)")
	y := fs.Float64("rate-y", 2, "leaky bucket drain, requests per second")
	opLimit := fs.Duration("op-limit", 480*time.Second, "operating limit: execution time per method and window (0 = off)")
	opWindow := fs.Duration("op-window", 10*time.Minute, "operating limit window")
	latency := fs.Duration("latency", 0, "delay added to every answer")
	seed := fs.Bool("seed", true, "start with the demo CRM (3 deals, contacts, leads); -seed=false starts empty")
	deals := fs.Int("deals", 0, "generated deals to add after the demo ones")
	contacts := fs.Int("contacts", 0, "generated contacts to add after the demo ones")
	leads := fs.Int("leads", 0, "generated leads to add after the demo ones")
	applySync := syncFlags(fs) // faults.go
	usage := func(w io.Writer) {
		fmt.Fprint(w, description+syncHelp)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed below: on stdout for -help
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return nil
	}
	if err != nil || fs.NArg() > 0 {
		if err == nil {
			fmt.Fprintf(stderr, "b24sim: unexpected argument %q\n", fs.Arg(0))
		}
		fmt.Fprintln(stderr, "usage: b24sim [flags]; b24sim -help lists them")
		return exitCode(2)
	}
	if *secret == "" {
		return errors.New("empty -secret")
	}
	sim := bitrix24test.NewServer(
		bitrix24test.WithCredentials(*user, *secret),
		bitrix24test.WithRate(*x, *y),
		bitrix24test.WithOperatingLimit(*opLimit, *opWindow),
		bitrix24test.WithLatency(*latency),
	)
	if err := applySync(sim); err != nil {
		return err
	}
	defer sim.Close()
	if *seed {
		sim.SeedDemo()
	}
	sim.SeedDeals(*deals)
	sim.SeedContacts(*contacts)
	sim.SeedLeads(*leads)
	return sim.ListenAndServe(ctx, *listen, func(base string) {
		fmt.Fprintf(stdout, "b24sim: portal %s, webhook %s/rest/%s/<secret>/ (%d deals, %d contacts, %d leads)\n",
			base, base, *user, sim.Count("deal"), sim.Count("contact"), sim.Count("lead"))
	})
}
