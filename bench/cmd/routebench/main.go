// Command routebench measures routing under a Bitrix24 mass update (the
// routing scenario of task bench, docs/performance.md "Routing
// throughput"): it runs an in-process Bitrix24 simulator at the portal's
// default limit (2 requests/s, burst 50) with -deals deals, a receiver
// that verifies every delivery's Standard Webhooks signature, and the
// hookgate binary -hookgate with one route crm.deal.get → delivery; it
// posts -events ONCRMDEALUPDATE events (the simulator bumping the deal's
// version before each) and prints the events routed (delivered) per
// second per portal, over at most -window after the first was accepted.
//
//	routebench -hookgate ./hookgate -label hookgate -events 10000 -deals 2000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/providers/standard"
)

const (
	token   = "bench-b24-token-5r2w"
	portal  = "bench-portal-secret-9q1z"
	signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "routebench:", err)
		os.Exit(1)
	}
}

// receiver counts the distinct events delivered (a coalesced delivery
// counts every id it lists).
type receiver struct {
	mu      sync.Mutex
	seen    map[string]bool
	bad     int
	last    time.Time
	posts   int
	version map[string]int
	drops   int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("webhook-id")
	sec, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	ok := standard.SignatureMatches(hookgate.Secret(signing), id, time.Unix(sec, 0), body, r.Header.Get("webhook-signature"))
	var ev struct {
		ID   string `json:"id"`
		Data struct {
			Params     map[string]string `json:"params"`
			Coalesced  []string          `json:"coalesced"`
			Enrichment struct {
				Result struct {
					Version string `json:"VERSION"`
				} `json:"result"`
			} `json:"enrichment"`
		} `json:"data"`
	}
	if ok {
		ok = json.Unmarshal(body, &ev) == nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !ok {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.posts++
	ids := ev.Data.Coalesced
	if len(ids) == 0 {
		ids = []string{ev.ID}
	}
	for _, id := range ids {
		rc.seen[id] = true
	}
	deal := ev.Data.Params["data[FIELDS][ID]"]
	v, _ := strconv.Atoi(ev.Data.Enrichment.Result.Version)
	if v < rc.version[deal] {
		rc.drops++
	}
	rc.version[deal] = max(v, rc.version[deal])
	rc.last = time.Now()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count() (int, time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.seen), rc.last
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run() error {
	bin := flag.String("hookgate", "", "the hookgate binary to run (required)")
	label := flag.String("label", "hookgate", "name printed with the result")
	events := flag.Int("events", 10000, "ONCRMDEALUPDATE events to post")
	deals := flag.Int("deals", 2000, "deals they touch (round after round)")
	window := flag.Duration("window", 3*time.Minute, "longest measured time after the first event was accepted")
	workers := flag.Int("workers", 128, "retry.workers of the gateway")
	coalesce := flag.Bool("coalesce", false, "route with coalesce: latest")
	keep := flag.String("keep", "", "directory for the gateway's config and log (default: a temporary one, removed)")
	flag.Parse()
	if *bin == "" {
		return errors.New("-hookgate is required")
	}
	dir := *keep
	if dir == "" {
		d, err := os.MkdirTemp("", "routebench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", portal))
	sim.SeedDeals(*deals)
	simSrv := httptest.NewServer(sim)
	defer simSrv.Close()
	rc := &receiver{seen: map[string]bool{}, version: map[string]int{}}
	recvSrv := httptest.NewServer(rc)
	defer recvSrv.Close()

	httpPort, err := freePort()
	if err != nil {
		return err
	}
	busPort, err := freePort()
	if err != nil {
		return err
	}
	extra := ""
	if *coalesce {
		extra = "coalesce: latest"
	}
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:%d"}
data_dir: %s
bus: {listen: "127.0.0.1:%d"}
secrets: {backend: file, file: %s}
log: {level: warn}
retry: {workers: %d}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
portals:
  - {id: main, base_url: %q, user_id: 1, secret: b24/portal}
routes:
  - name: deal-sync
    on: {source: b24, event: ONCRMDEALUPDATE}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: %q, secret: platform/signing}
    %s
`, httpPort, filepath.Join(dir, "data"), busPort, filepath.Join(dir, "secrets.yaml"), *workers, simSrv.URL, recvSrv.URL+"/in", extra)
	if err := os.WriteFile(filepath.Join(dir, "hookgate.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(
		"b24/token: {token: "+token+"}\nb24/portal: {token: "+portal+"}\nplatform/signing: {token: "+signing+"}\n"), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, *label+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, *bin, "serve", "--config", filepath.Join(dir, "hookgate.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 300 {
			return fmt.Errorf("%s: no /healthz after 30 s (log in %s)", *label, logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// post round after round; one worker per share of the deals keeps
	// each deal's events in order
	const senders = 16
	var first time.Time
	var firstOnce sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sendErr error
	rounds := (*events + *deals - 1) / *deals
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for w := range senders {
		wg.Go(func() {
			n := 0
			for round := range rounds {
				for deal := 1 + w; deal <= *deals; deal += senders {
					if round*(*deals)+deal > *events {
						continue
					}
					sim.Bump("deal", deal)
					v := url.Values{}
					v.Set("event", "ONCRMDEALUPDATE")
					v.Set("data[FIELDS][ID]", strconv.Itoa(deal))
					v.Set("ts", strconv.Itoa(1767000000+round))
					v.Set("auth[application_token]", token)
					resp, err := client.Post(base+"/webhook/b24", "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("answer %d", resp.StatusCode)
						}
					}
					if err != nil {
						mu.Lock()
						sendErr = err
						mu.Unlock()
						return
					}
					firstOnce.Do(func() { first = time.Now() })
					n++
				}
			}
		})
	}
	wg.Wait()
	if sendErr != nil {
		return fmt.Errorf("posting events: %w", sendErr)
	}
	accepted := time.Since(first)
	deadline := first.Add(*window)
	for {
		n, _ := rc.count()
		if n >= *events || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n, last := rc.count()
	took := last.Sub(first)
	if n < *events {
		took = *window
	}
	rate := float64(n) / took.Seconds()
	rc.mu.Lock()
	bad, posts, drops := rc.bad, rc.posts, rc.drops
	rc.mu.Unlock()
	fmt.Printf("routing %-10s %6d events (%d deals) posted in %5.1fs; %6d delivered in %6.1fs: %7.1f events/s per portal; %d deliveries, %d requests to the portal (%d batch, %d nested gets), %d QUERY_LIMIT_EXCEEDED, %d bad signatures, %d version drops\n",
		*label, *events, *deals, accepted.Seconds(), n, took.Seconds(), rate, posts,
		sim.TotalRequests(), sim.Requests("batch"), sim.Nested("crm.deal.get"), sim.Answers(bitrix24test.CodeQueryLimitExceeded), bad, drops)
	if bad > 0 || drops > 0 {
		return fmt.Errorf("%s: %d bad signatures, %d version drops", *label, bad, drops)
	}
	return nil
}
