package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/dashboards"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/outbound/delivery/deliverytest"
)

// platform is a test platform endpoint recording deliveries; it can be
// switched to answer 503.
type platform struct {
	mu         sync.Mutex
	deliveries []delivered
	attempts   map[string]int // webhook-id → attempts seen
	down       atomic.Bool
}

type delivered struct {
	header http.Header
	body   []byte
	deal   string // data.params["data[FIELDS][ID]"]
}

// ServeHTTP answers 400 to a body it cannot read or decode: the delivery
// fails where the test sees it, instead of a delivery that counts for no
// deal.
func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var ev struct {
		Data struct {
			Params map[string]string `json:"params"`
		} `json:"data"`
	}
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[r.Header.Get("webhook-id")]++
	if p.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p.deliveries = append(p.deliveries, delivered{header: r.Header.Clone(), body: body, deal: ev.Data.Params["data[FIELDS][ID]"]})
	w.WriteHeader(http.StatusNoContent)
}

// delivered counts the deliveries (2xx answers) with this webhook-id.
func (p *platform) delivered(webhookID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, d := range p.deliveries {
		if d.header.Get("webhook-id") == webhookID {
			n++
		}
	}
	return n
}

// forDeal returns the deliveries whose event names deal id.
func (p *platform) forDeal(id string) []delivered {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []delivered
	for _, d := range p.deliveries {
		if d.deal == id {
			out = append(out, d)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chQuery runs a query on the shared ClickHouse over HTTP.
func chQuery(t *testing.T, q string) string {
	t.Helper()
	out, err := testenv.ClickHouseHTTPQuery(testenv.ClickHouseHTTP(t), q, nil)
	if err != nil {
		t.Fatalf("clickhouse: %v\nquery: %s", err, q)
	}
	return strings.TrimSpace(out)
}

// TestRoutesEndToEnd is issue 6's acceptance on real servers (Vault,
// ClickHouse, embedded NATS), the Bitrix24 simulator and a test platform;
// the history it leaves then feeds every dashboard query (issue 7) and
// /metrics is checked for every family (issue 8).
func TestRoutesEndToEnd(t *testing.T) {
	v := testenv.Vault(t)
	chAddr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, chAddr)
	verifier := deliverytest.NewVerifier(t)

	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", "portal-secret-e2e-77"))
	sim.SeedDeals(12)
	simSrv := sim.Start()
	defer simSrv.Close()
	plat := &platform{attempts: map[string]int{}}
	platSrv := httptest.NewServer(plat)
	defer platSrv.Close()

	prefix := fmt.Sprintf("e2e/%d", time.Now().UnixNano())
	const appToken, signing, adminTok = "route-app-token-3x9k", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "admin-token-e2e-6t2p"
	v.Put(t, prefix+"/deals", map[string]any{"token": appToken})
	v.Put(t, prefix+"/portal", map[string]any{"token": "portal-secret-e2e-77"})
	v.Put(t, prefix+"/platform", map[string]any{"token": signing})
	v.Put(t, prefix+"/admin", map[string]any{"token": adminTok})
	cfg := vaultConfig(t, v, fmt.Sprintf(`
history:
  clickhouse: {addr: ["%s"], database: %s}
  flush_interval: 200ms
retry:
  schedule: [300ms, 600ms, 900ms]
admin:
  token: %s/admin
sources:
  - {id: b24, provider: bitrix24, secret: %s/deals}
portals:
  - {id: main, base_url: "%s", user_id: 1, secret: %s/portal}
routes:
  - name: deal-sync
    on: {source: b24, event: ONCRMDEAL*}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "%s/hooks/deals", secret: %s/platform, timeout: 2s}
  - name: broken
    on: {source: b24, event: ONCRMLEADADD}
    call: {portal: main, method: crm.nope.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
`, chAddr, db, prefix, prefix, simSrv.URL, prefix, platSrv.URL, prefix))
	g := startGateway(t, cfg)
	hook := g.URL + "/webhook/b24"
	send := func(event, id, ts string) (int, map[string]string) {
		body := strings.Replace(bitrixForm(appToken, id, ts), "ONCRMDEALADD", event, 1)
		return post(t, hook, formType, body, nil)
	}

	// deal 9: exactly one delivery, holding the deal as the simulator has it
	status, acc := send("ONCRMDEALADD", "9", "1766047124")
	if status != 200 {
		t.Fatalf("ONCRMDEALADD: %d %v", status, acc)
	}
	eventID := acc["id"]
	waitFor(t, "the delivery of deal 9", 10*time.Second, func() bool { return len(plat.forDeal("9")) > 0 })
	if status, dup := send("ONCRMDEALADD", "9", "1766047124"); status != 200 || dup["status"] != "duplicate" {
		t.Errorf("same event again: %d %v; want duplicate", status, dup)
	}
	d := plat.forDeal("9")[0]
	var ev struct {
		ID   string `json:"id"`
		Data struct {
			Enrichment struct {
				Method string         `json:"method"`
				Result map[string]any `json:"result"`
			} `json:"enrichment"`
		} `json:"data"`
	}
	if err := json.Unmarshal(d.body, &ev); err != nil {
		t.Fatalf("delivery body: %v", err)
	}
	want := sim.Item("deal", 9)
	if ev.ID != eventID || ev.Data.Enrichment.Method != "crm.deal.get" || ev.Data.Enrichment.Result["TITLE"] != want["TITLE"] || ev.Data.Enrichment.Result["OPPORTUNITY"] != want["OPPORTUNITY"] {
		t.Errorf("delivered %s; want event %s enriched with deal 9 %v", d.body, eventID, want)
	}
	if ok, out := verifier.Verify(t, signing, false, d.header, d.body); !ok {
		t.Errorf("npm standardwebhooks does not verify the delivery: %s", out)
	}

	// platform down: retried on the schedule, a graceful restart in
	// between, delivered exactly once when it is back
	plat.down.Store(true)
	status, deal10 := send("ONCRMDEALUPDATE", "10", "1766047200")
	if status != 200 {
		t.Fatalf("ONCRMDEALUPDATE: %d %v", status, deal10)
	}
	waitFor(t, "two failed attempts for deal 10", 10*time.Second, func() bool {
		plat.mu.Lock()
		defer plat.mu.Unlock()
		n := 0
		for _, a := range plat.attempts {
			n += a
		}
		return n >= 3 // deal 9's success + two failures
	})
	g.Stop()
	g.Start()
	if err := waitHealthy(g.URL, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	plat.down.Store(false)
	waitFor(t, "the delivery of deal 10 after the restart", 15*time.Second, func() bool { return len(plat.forDeal("10")) > 0 })
	// a permanently failing route dead-letters its job
	send("ONCRMLEADADD", "11", "1766047300")
	// Deals 9 and 10 delivered exactly once: a later event of each deal
	// has the same job key, so it runs on the same partition after any
	// redelivery of the earlier job; once both later ones are delivered,
	// a second delivery has shown up if there was one (no sleep).
	var later []string
	for i, deal := range []string{"9", "10"} {
		status, acc := send("ONCRMDEALUPDATE", deal, strconv.Itoa(1766047350+i))
		if status != 200 || acc["status"] != "accepted" {
			t.Fatalf("a later event of deal %s: %d %v", deal, status, acc)
		}
		later = append(later, acc["id"]+"/deal-sync")
	}
	waitFor(t, "the later events of deals 9 and 10", 10*time.Second, func() bool {
		return plat.delivered(later[0]) > 0 && plat.delivered(later[1]) > 0
	})
	if n := plat.delivered(deal10["id"] + "/deal-sync"); n != 1 {
		t.Errorf("deal 10 delivered %d times; want exactly 1", n)
	}
	if n := plat.delivered(eventID + "/deal-sync"); n != 1 {
		t.Errorf("deal 9 delivered %d times; want exactly 1", n)
	}
	send("ONCRMDEALADD", "12", "1766047400")
	post(t, hook, formType, bitrixForm("wrong-token-x", "1", "1"), nil)
	post(t, g.URL+"/webhook/nope", formType, "event=X", nil)
	waitFor(t, "the delivery of deal 12", 10*time.Second, func() bool { return len(plat.forDeal("12")) > 0 })

	// the dead letter, through the CLI beside the running gateway
	waitFor(t, "a dead letter", 10*time.Second, func() bool {
		out, _ := exec.Command(binPath, "dead", "--config", cfg, "list", "--json").Output()
		return strings.Contains(string(out), "broken")
	})

	// ClickHouse: inbound, crm.deal.get and deliver rows under one event_id
	waitFor(t, "history rows of deal 9", 15*time.Second, func() bool {
		out, _ := testenv.ClickHouseHTTPQuery(testenv.ClickHouseHTTP(t), fmt.Sprintf(
			"SELECT count() FROM %s.exchanges WHERE event_id = '%s'", db, eventID), nil)
		n := 0
		fmt.Sscan(strings.TrimSpace(out), &n)
		return n >= 3
	})
	trace := chQuery(t, fmt.Sprintf("SELECT direction, operation, outcome FROM %s.exchanges WHERE event_id = '%s' AND outcome != 'duplicate' ORDER BY ts, direction, operation = 'deliver' FORMAT TSV", db, eventID)) // ts has whole seconds on 18.16: ties in causal order
	wantTrace := "inbound\t\taccepted\noutbound\tcrm.deal.get\tok\noutbound\tdeliver\tok"
	if trace != wantTrace {
		t.Errorf("trace of %s in ClickHouse:\n%s\nwant:\n%s", eventID, trace, wantTrace)
	}
	for _, secret := range []string{appToken, "portal-secret-e2e-77", signing, adminTok} {
		if n := chQuery(t, fmt.Sprintf("SELECT count() FROM %s.exchanges WHERE position(concat(url, request_headers, request_body, response_body, error, remote_addr), '%s') > 0", db, secret)); n != "0" {
			t.Errorf("%s rows hold a secret value", n)
		}
	}

	// hookgate history --event-id: the same trace, in order
	out, err := exec.Command(binPath, "history", "--config", cfg, "--event-id", eventID).CombinedOutput()
	if err != nil {
		t.Fatalf("hookgate history: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	order := []string{"accepted", "crm.deal.get", "deliver"}
	k := 0
	for _, l := range lines {
		if k < len(order) && strings.Contains(l, order[k]) {
			k++
		}
	}
	if k != len(order) {
		t.Errorf("hookgate history --event-id printed:\n%s\nwant rows for %v in order", out, order)
	}

	// the admin API lists disabled routes and re-enables one
	admin := func(method, path string) (int, string) {
		req, err := http.NewRequest(method, g.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+adminTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp.StatusCode, string(b)
	}
	if status, body := admin("GET", "/admin/routes/disabled"); status != 200 || !strings.Contains(body, `"disabled"`) {
		t.Errorf("GET /admin/routes/disabled: %d %s", status, body)
	}
	if status, _ := admin("POST", "/admin/routes/nope/enable"); status != 404 {
		t.Errorf("enable an unknown route: %d; want 404", status)
	}
	if status, body := admin("POST", "/admin/routes/deal-sync/enable"); status != 200 {
		t.Errorf("enable deal-sync: %d %s", status, body)
	}
	if status, body := admin("GET", "/admin/dead"); status != 200 || !strings.Contains(body, "broken") {
		t.Errorf("GET /admin/dead: %d %s; want the broken route's job", status, body)
	}

	checkDashboards(t, db, eventID)
	checkMetrics(t, g.URL)
}

// checkDashboards runs every dashboard panel, variable and library query on
// the history that the real traffic above left, and checks the inbound
// outcome counts against what was sent.
func checkDashboards(t *testing.T, db, eventID string) {
	t.Helper()
	ds, err := dashboards.Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	c := dashboards.Context{
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Interval: time.Minute,
		Vars: map[string]string{"database": db, "source": dashboards.AllValue, "portal": dashboards.AllValue, "event_id": eventID},
	}
	ran := 0
	run := func(name, sql string) string {
		q, err := dashboards.Expand(sql, c)
		if err != nil {
			t.Errorf("%s: expand: %v", name, err)
			return ""
		}
		out, err := testenv.ClickHouseHTTPQuery(testenv.ClickHouseHTTP(t), q+" FORMAT TSV", nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		ran++
		return out
	}
	for _, d := range ds {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if tg.RawSQL != "" {
					run(d.UID+"/"+p.Title, tg.RawSQL)
				}
			}
		}
		for _, v := range d.Templating.List {
			if sql := v.SQL(); sql != "" {
				run(d.UID+"/$"+v.Name, sql)
			}
		}
	}
	qs, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		run("queries/"+q.Name, dashboards.ForDatabase(q.SQL, db))
	}
	t.Logf("ran %d dashboard and library queries on the real traffic's history", ran)
	// inbound outcomes: 6 accepted (deals 9, 10 and 12, the lead, the
	// later events of deals 9 and 10), 1 duplicate, 2 rejected (wrong
	// token, unknown source)
	got := chQuery(t, fmt.Sprintf("SELECT outcome, count() FROM %s.exchanges WHERE direction = 'inbound' GROUP BY outcome ORDER BY outcome FORMAT TSV", db))
	if want := "accepted\t6\nduplicate\t1\nrejected\t2"; got != want {
		t.Errorf("inbound outcomes:\n%s\nwant:\n%s", got, want)
	}
}

// checkMetrics scrapes /metrics and checks every family of issue 8 is
// there, the counters non-zero.
func checkMetrics(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for _, fam := range []string{
		"hookgate_inbound_requests_total", "hookgate_inbound_duration_seconds_count",
		"hookgate_outbound_requests_total", "hookgate_outbound_duration_seconds_count",
		"hookgate_jobs_pending", "hookgate_jobs_dead", "hookgate_history_rows_total",
		"hookgate_history_spool_bytes", "hookgate_breaker_state", "hookgate_secret_cache_total",
	} {
		found, nonzero := false, false
		for _, line := range bytes.Split(b, []byte("\n")) {
			s := string(line)
			if strings.HasPrefix(s, fam+"{") || strings.HasPrefix(s, fam+" ") {
				found = true
				if !strings.HasSuffix(s, " 0") {
					nonzero = true
				}
			}
		}
		gauge := fam == "hookgate_jobs_pending" || fam == "hookgate_history_spool_bytes" || fam == "hookgate_breaker_state"
		if !found || (!gauge && !nonzero) {
			t.Errorf("/metrics: family %s found=%v nonzero=%v", fam, found, nonzero)
		}
	}
}
