// Command receiver is a stand-in for the platform that hookgate's routes
// deliver to, for the quickstart (docs/quickstart.md) and manual tests:
//
//	receiver -listen 127.0.0.1:9090 -secret whsec_... [-status 200]
//
// It checks each delivery's Standard Webhooks signature, prints one line
// per delivery and answers with a status that can be changed while it
// runs (PUT /status). receiver -help prints the description and the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/standard"
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
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

// exitCode is an exit status for a run that already said why.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const description = `receiver: a stand-in for the platform hookgate delivers to.

Every POST (any path but /status) is a delivery. receiver checks its
Standard Webhooks signature (headers webhook-id, webhook-timestamp,
webhook-signature; HMAC-SHA256 of "id.timestamp.body" with the -secret
whsec_ key, timestamp within -tolerance) and prints one line:

  verified <webhook-id> (answered <status>) <body>
  BAD SIGNATURE <webhook-id>: <reason>

A verified delivery is answered with the current status (-status, 200 by
default); a bad one with 401. The status can be changed while it runs:

  curl -X PUT localhost:9090/status -d 500   # answer 500 from now on
  curl -X PUT localhost:9090/status -d 410   # 410 Gone: hookgate disables the route
  curl localhost:9090/status                 # the current status

usage: receiver [flags]

flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9090", "address to listen on")
	secret := fs.String("secret", "", "signing secret of the route's deliver.secret (whsec_<base64>, or a raw key)")
	status := fs.Int("status", http.StatusOK, "HTTP status of the answer to a verified delivery (PUT /status changes it)")
	tolerance := fs.Duration("tolerance", standard.DefaultTolerance, "how far webhook-timestamp may be from now")
	fs.Usage = func() {} // printed below: on stdout for -help
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, description)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if err != nil || fs.NArg() > 0 {
		if err == nil {
			fmt.Fprintf(stderr, "receiver: unexpected argument %q\n", fs.Arg(0))
		}
		fmt.Fprintln(stderr, "usage: receiver [flags]; receiver -help lists them")
		return exitCode(2)
	}
	if *secret == "" {
		return errors.New("empty -secret")
	}
	if _, err := standard.DecodeSecret(hookgate.Secret(*secret)); err != nil {
		return fmt.Errorf("-secret: %w", err)
	}
	if !validStatus(*status) {
		return fmt.Errorf("-status %d: want 200 to 599", *status)
	}
	h := newHandler(hookgate.Secret(*secret), *status, *tolerance, stdout)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "receiver: listening on http://%s, answering %d\n", ln.Addr(), *status)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func validStatus(s int) bool { return s >= 200 && s <= 599 }

// handler answers deliveries and the /status control endpoint.
type handler struct {
	secret    hookgate.Secret
	tolerance time.Duration
	now       func() time.Time
	status    atomic.Int64

	mu  sync.Mutex // one line at a time on out
	out io.Writer
}

func newHandler(secret hookgate.Secret, status int, tolerance time.Duration, out io.Writer) *handler {
	h := &handler{secret: secret, tolerance: tolerance, now: time.Now, out: out}
	h.status.Store(int64(status))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/status" {
		h.control(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "deliveries are POSTs", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get(standard.HeaderID)
	if err := h.verify(id, r.Header.Get(standard.HeaderTimestamp), r.Header.Get(standard.HeaderSignature), body); err != nil {
		h.printf("BAD SIGNATURE %s: %v\n", id, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	status := int(h.status.Load())
	h.printf("verified %s (answered %d) %s\n", id, status, strings.TrimSpace(string(body)))
	w.WriteHeader(status)
}

// control reads (GET) or sets (PUT, the status as the body) the status
// answered to verified deliveries.
func (h *handler) control(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut, http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, 64))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !validStatus(s) {
			http.Error(w, fmt.Sprintf("want a status from 200 to 599, got %q", b), http.StatusBadRequest)
			return
		}
		h.status.Store(int64(s))
		h.printf("status %d\n", s)
	default:
		http.Error(w, "GET or PUT /status", http.StatusMethodNotAllowed)
		return
	}
	fmt.Fprintf(w, "%d\n", h.status.Load())
}

// verify checks a Standard Webhooks signature: one of the space-separated
// "v1,<base64>" values must equal the HMAC of id.timestamp.body.
func (h *handler) verify(id, ts, sigs string, body []byte) error {
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	t := time.Unix(sec, 0)
	if d := h.now().Sub(t); d > h.tolerance || d < -h.tolerance {
		return fmt.Errorf("webhook-timestamp %s is more than %s from now", t.UTC().Format(time.RFC3339), h.tolerance)
	}
	if _, err := standard.DecodeSecret(h.secret); err != nil {
		return err
	}
	if !standard.SignatureMatches(h.secret, id, t, body, sigs) {
		return errors.New("no signature matches the secret")
	}
	return nil
}

func (h *handler) printf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, format, args...)
}
