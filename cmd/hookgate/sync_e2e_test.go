package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
	"github.com/hookgate/hookgate/providers/standard"
)

// Issue 18's acceptance: two-way deal sync against the simulator and a
// local platform receiver, through the real binary.

const (
	syncAppToken = "sync-app-token-7q2w"
	syncSigning  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the platform's, both ways
)

// syncPlatform is the platform: it keeps every deal state delivered to it.
type syncPlatform struct {
	mu     sync.Mutex
	states map[string][]map[string]any // deal id → enrichment results, in arrival order
	total  int
}

func (p *syncPlatform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var ev struct {
		Data struct {
			Enrichment struct {
				Result map[string]any `json:"result"`
			} `json:"enrichment"`
		} `json:"data"`
	}
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil || ev.Data.Enrichment.Result == nil {
		http.Error(w, fmt.Sprintf("not an enriched deal: %v", err), http.StatusBadRequest)
		return
	}
	id, _ := ev.Data.Enrichment.Result["ID"].(string)
	p.mu.Lock()
	p.states[id] = append(p.states[id], ev.Data.Enrichment.Result)
	p.total++
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (p *syncPlatform) deliveries(id string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.states[id]...)
}

// has reports whether the platform received the deal's state item
// (compared on TITLE and DATE_MODIFY).
func (p *syncPlatform) has(id string, item map[string]any) bool {
	for _, st := range p.deliveries(id) {
		if st["TITLE"] == item["TITLE"] && st["DATE_MODIFY"] == item["DATE_MODIFY"] {
			return true
		}
	}
	return false
}

// syncEnv is a gateway between the simulator and the platform.
type syncEnv struct {
	g    *gatewayProc
	sim  *bitrix24test.Server
	plat *syncPlatform
}

// startSync starts the simulator (rate x at once, y per second), the
// platform and a gateway whose config is the base plus extra; the
// portal's client keeps to rate per second.
func startSync(t *testing.T, x int, y, rate float64, extra string, seed int) *syncEnv {
	t.Helper()
	sim := bitrix24test.NewServer(bitrix24test.WithRate(x, y))
	sim.SeedDeals(seed)
	simSrv := sim.Start()
	t.Cleanup(func() { sim.Close(); simSrv.Close() })
	plat := &syncPlatform{states: map[string][]map[string]any{}}
	platSrv := httptest.NewServer(plat)
	t.Cleanup(platSrv.Close)
	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
retry:
  schedule: [300ms, 600ms, 1s]
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
  - {id: platform, provider: standard, secret: platform/signing}
portals:
  - {id: main, base_url: "%s", user_id: 1, secret: b24/portal, timeout: 1s, rate: {per_second: %g, burst: %d}}
routes:
  - name: deal-to-platform
    on: {source: "*", event: ONCRMDEAL*}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "%s/hooks/deals", secret: platform/signing, timeout: 5s}
  - name: platform-deal-update
    on: {source: platform, event: deal.updated}
    key: '{{ json "deal.id" }}'
    call:
      portal: main
      method: crm.deal.update
      params: {id: '{{ json "deal.id" }}', fields: {TITLE: '{{ json "deal.title" }}'}}
  - name: platform-deal-create
    on: {source: platform, event: deal.created}
    key: '{{ json "deal.id" }}'
    call:
      portal: main
      method: crm.deal.add
      params: {fields: {TITLE: '{{ json "deal.title" }}', ORIGINATOR_ID: platform, ORIGIN_ID: '{{ json "deal.id" }}'}}
  - name: platform-deal-create-unchecked
    on: {source: platform, event: deal.created.unchecked}
    key: '{{ json "deal.id" }}'
    call:
      portal: main
      method: crm.deal.add
      params: {fields: {TITLE: '{{ json "deal.title" }}'}}
%s`, simSrv.URL, rate, x-10, platSrv.URL, extra))
	secrets := fmt.Sprintf("b24/token: {token: %s}\nb24/portal: {token: %s}\nplatform/signing: {token: %s}\n",
		syncAppToken, bitrix24test.DefaultSecret, syncSigning)
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, path)
	sim.SetEventHandler(bitrix24test.EventHandler{URL: g.URL + "/webhook/b24", Token: syncAppToken})
	return &syncEnv{g: g, sim: sim, plat: plat}
}

// send posts a signed platform event.
func (e *syncEnv) send(t *testing.T, id string, payload any) {
	t.Helper()
	body, _ := json.Marshal(payload)
	ts := time.Now()
	sig, err := standard.Sign(hookgate.Secret(syncSigning), id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	status, ans := post(t, e.g.URL+"/webhook/platform", "application/json", string(body), map[string]string{
		"webhook-id": id, "webhook-timestamp": strconv.FormatInt(ts.Unix(), 10), "webhook-signature": sig,
	})
	if status != 200 {
		t.Fatalf("platform event %s: %d %v", id, status, ans)
	}
}

// metric sums the samples of a family on /metrics.
func (e *syncEnv) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(e.g.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// deadJobs returns `hookgate dead list --json`.
func (e *syncEnv) deadJobs(t *testing.T) []map[string]any {
	t.Helper()
	cmd := exec.Command(binPath, "dead", "--config", e.g.Config, "list", "--json")
	cmd.Env = append(os.Environ(), "HOOKGATE_BUS_LISTEN="+busListen(e.g.BusURL))
	var errOut strings.Builder
	cmd.Stderr = &errOut
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("hookgate dead list: %v: %s", err, errOut.String())
	}
	out := string(b)
	var dead []map[string]any
	if err := json.Unmarshal([]byte(out), &dead); err != nil {
		var wrapped struct {
			Dead []map[string]any `json:"dead"`
		}
		if err2 := json.Unmarshal([]byte(out), &wrapped); err2 != nil {
			t.Fatalf("dead list output %q: %v", out, err)
		}
		dead = wrapped.Dead
	}
	return dead
}

// TestSyncRetriedAdd: a crm.deal.add whose first answer is lost after
// Bitrix24 committed it leaves exactly one deal and the job succeeds; the
// same add without ORIGINATOR_ID/ORIGIN_ID dead-letters with
// ambiguous_write and still leaves one deal.
func TestSyncRetriedAdd(t *testing.T) {
	t.Parallel()
	e := startSync(t, 50, 2, 2, "", 0)
	e.sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", AfterCommit: true, Latency: 10 * time.Second})
	e.send(t, "msg_add_1", map[string]any{"type": "deal.created", "deal": map[string]any{"id": "p-1", "title": "Acme"}})
	// done: the add's answer was lost, the lookup found the deal, the job
	// succeeded and read the deal back, and so the add's own event (the
	// echo) was suppressed
	waitFor(t, "the checked add to succeed", 30*time.Second, func() bool {
		return e.metric(t, "hookgate_echo_suppressed_total") >= 1
	})
	if n := e.sim.Count("deal"); n != 1 {
		t.Fatalf("%d deals after the retried add; want 1", n)
	}
	if adds, lists := e.sim.Requests("crm.deal.add"), e.sim.Requests("crm.deal.list"); adds != 1 || lists != 1 {
		t.Errorf("%d adds, %d lists; want 1 add and 1 lookup", adds, lists)
	}
	if d := e.sim.Item("deal", 1); d["ORIGIN_ID"] != "p-1" || d["ORIGINATOR_ID"] != "platform" {
		t.Errorf("deal 1 = %v; want ORIGINATOR_ID platform, ORIGIN_ID p-1", d)
	}
	if dead := e.deadJobs(t); len(dead) != 0 {
		t.Errorf("dead jobs after the checked add: %v", dead)
	}

	e.sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", AfterCommit: true, Latency: 10 * time.Second})
	e.send(t, "msg_add_2", map[string]any{"type": "deal.created.unchecked", "deal": map[string]any{"id": "p-2", "title": "Globex"}})
	var dead []map[string]any
	waitFor(t, "the unchecked add to be dead-lettered", 30*time.Second, func() bool {
		dead = e.deadJobs(t)
		return len(dead) > 0
	})
	b, _ := json.Marshal(dead)
	if len(dead) != 1 || !strings.Contains(string(b), "ambiguous_write") || !strings.Contains(string(b), "before replaying") {
		t.Errorf("dead jobs = %s; want one with ambiguous_write and what to check", b)
	}
	time.Sleep(1500 * time.Millisecond) // a retry, if one came, would have run
	if n, adds := e.sim.Count("deal"), e.sim.Requests("crm.deal.add"); n != 2 || adds != 2 {
		t.Errorf("%d deals, %d adds after the unchecked add; want 2 and 2 (one each)", n, adds)
	}
}

// TestSyncEcho: the platform updates 100 deals through hookgate and the
// simulator fires an update event for each write: none of those echoes
// reaches the platform. 100 changes made directly in the simulator in the
// same minutes are all delivered.
func TestSyncEcho(t *testing.T) {
	t.Parallel()
	e := startSync(t, 100, 50, 40, "", 200)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= 100; i++ {
			e.send(t, fmt.Sprintf("msg_upd_%d", i), map[string]any{"type": "deal.updated",
				"deal": map[string]any{"id": strconv.Itoa(i), "title": fmt.Sprintf("platform title %d", i)}})
			time.Sleep(10 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for id := 101; id <= 200; id++ {
			e.sim.Change("deal", id, map[string]any{"TITLE": fmt.Sprintf("user title %d", id)}, "")
			time.Sleep(10 * time.Millisecond)
		}
	})
	wg.Wait()
	echoesDelivered := func() int {
		n := 0
		for id := 1; id <= 100; id++ {
			n += len(e.plat.deliveries(strconv.Itoa(id)))
		}
		return n
	}
	// every echo handled (suppressed or, wrongly, delivered) and every
	// direct change delivered
	waitFor(t, "100 echoes handled and 100 direct changes delivered", 120*time.Second, func() bool {
		delivered := 0
		for id := 101; id <= 200; id++ {
			if len(e.plat.deliveries(strconv.Itoa(id))) > 0 {
				delivered++
			}
		}
		return delivered == 100 && int(e.metric(t, "hookgate_echo_suppressed_total"))+echoesDelivered() >= 100
	})
	time.Sleep(time.Second) // anything still on its way
	if echoes := echoesDelivered(); echoes != 0 {
		t.Errorf("%d echoes of hookgate's own writes reached the platform; want 0", echoes)
	}
	for id := 101; id <= 200; id++ {
		if s := strconv.Itoa(id); !e.plat.has(s, e.sim.Item("deal", id)) {
			t.Errorf("deal %d: the user's change was not delivered (got %v)", id, e.plat.deliveries(s))
		}
	}
	if n := e.metric(t, "hookgate_echo_suppressed_total"); n != 100 {
		t.Errorf("hookgate_echo_suppressed_total = %v; want 100", n)
	}
	if sent, _, failed := e.sim.EventCounts(); sent != 200 || failed != 0 {
		t.Errorf("simulator events: %d sent, %d failed; want 200 sent", sent, failed)
	}
	// history: one suppressed delivery row per echo
	var rows int
	waitFor(t, "100 suppressed rows in history", 15*time.Second, func() bool {
		rows = e.historyRows(t, `"outcome":"suppressed"`)
		return rows >= 100
	})
	if rows != 100 {
		t.Errorf("%d suppressed history rows; want 100", rows)
	}
}

// historyRows counts the NDJSON history lines that contain substr.
func (e *syncEnv) historyRows(t *testing.T, substr string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.g.DataDir, "history", "*.ndjson"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, substr) {
				n++
			}
		}
	}
	return n
}

// TestSyncGaps: over 1 000 changes the simulator drops 10 % of its
// events; after one reconcile period the platform has every changed
// deal's latest state, and the portal never answered
// QUERY_LIMIT_EXCEEDED.
func TestSyncGaps(t *testing.T) {
	t.Parallel()
	const every = 5 * time.Second
	e := startSync(t, 100, 50, 40, fmt.Sprintf("reconcile:\n  - {portal: main, entity: deal, every: %s, settle: 2s}\n", every), 100)
	e.sim.SetEventDrop(0.1)
	start := time.Now()
	for round := 0; round < 10; round++ {
		for id := 1; id <= 100; id++ {
			e.sim.Change("deal", id, map[string]any{"TITLE": fmt.Sprintf("deal %d v%d", id, round)}, "")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.sim.WaitEvents(ctx); err != nil {
		t.Fatalf("simulator events not sent: %v", err)
	}
	lastChange := time.Now()
	sent, dropped, failed := e.sim.EventCounts()
	if sent != 900 || dropped != 100 || failed != 0 {
		t.Fatalf("simulator events: %d sent, %d dropped, %d failed; want 900, 100, 0", sent, dropped, failed)
	}
	missing := func() []int {
		var out []int
		for id := 1; id <= 100; id++ {
			if !e.plat.has(strconv.Itoa(id), e.sim.Item("deal", id)) {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(120 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("after %v the platform lacks the latest state of %d deals: %v", time.Since(lastChange), len(m), m)
	}
	took := time.Since(lastChange)
	t.Logf("1000 changes made in %v; every latest state delivered %v after the events were sent (reconcile every %v); %d deliveries",
		lastChange.Sub(start), took, every, e.plat.total)
	// one period (and the settle time) plus room for the queue on a
	// loaded machine
	if limit := every + 2*time.Second + 30*time.Second; took > limit {
		t.Errorf("the platform had every latest state only %v after the last change; want within one reconcile period (%v with slack)", took, limit)
	}
	if n := e.metric(t, "hookgate_reconcile_events_total"); n < 1 {
		t.Errorf("hookgate_reconcile_events_total = %v; want the missed changes published", n)
	}
	if n := e.sim.Answers("QUERY_LIMIT_EXCEEDED"); n != 0 {
		t.Errorf("%d QUERY_LIMIT_EXCEEDED answers; want 0", n)
	}
}

// TestSyncReconcileTwoInstances: two gateways on one external NATS server
// reconcile once per period between them, not twice; a change whose event
// never came reaches the platform once.
func TestSyncReconcileTwoInstances(t *testing.T) {
	t.Parallel()
	busURL := testenv.NATSServer(t)
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0)) // no event handler: every event is missed
	sim.SeedDeals(5)
	simSrv := sim.Start()
	defer simSrv.Close()
	plat := &syncPlatform{states: map[string][]map[string]any{}}
	platSrv := httptest.NewServer(plat)
	defer platSrv.Close()
	const every = 2 * time.Second
	start := func() *gatewayProc {
		path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
bus: {url: "%s"}
retry: {schedule: [300ms, 600ms]}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
portals:
  - {id: main, base_url: "%s", user_id: 1, secret: b24/portal}
routes:
  - name: deal-to-platform
    on: {source: "*", event: ONCRMDEAL*}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "%s/hooks/deals", secret: platform/signing}
reconcile:
  - {portal: main, entity: deal, every: %s, settle: 500ms}
`, busURL, simSrv.URL, platSrv.URL, every))
		secrets := fmt.Sprintf("b24/token: {token: %s}\nb24/portal: {token: %s}\nplatform/signing: {token: %s}\n",
			syncAppToken, bitrix24test.DefaultSecret, syncSigning)
		if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(secrets), 0o600); err != nil {
			t.Fatal(err)
		}
		return startGateway(t, path)
	}
	a := start()
	start()
	sim.ResetCounters()
	began := time.Now()
	sim.Change("deal", 3, map[string]any{"TITLE": "changed while no event came"}, "")
	waitFor(t, "the missed change of deal 3", 30*time.Second, func() bool { return plat.has("3", sim.Item("deal", 3)) })
	time.Sleep(4*every - time.Since(began)%every) // whole periods, then a little
	elapsed := time.Since(began)
	runs := sim.Requests("crm.deal.list") // one page per run: five deals
	periods := int(elapsed / every)
	t.Logf("%d reconcile runs in %v (every %v) by two instances", runs, elapsed, every)
	if runs < periods-1 || runs > periods+1 {
		t.Errorf("%d runs in %v; want one per %v period (%d), not one per instance", runs, elapsed, every, periods)
	}
	// (the seeded deals may fall in the first window: their state before
	// the change may have been delivered too)
	changed := 0
	for _, st := range plat.deliveries("3") {
		if st["TITLE"] == "changed while no event came" {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("deal 3's change delivered %d times; want once", changed)
	}
	if n := a.metricSum(t, "hookgate_reconcile_runs_total"); n < 1 {
		t.Errorf("instance a: hookgate_reconcile_runs_total = %v", n)
	}
}

// metricSum sums the samples of a family on the gateway's /metrics.
func (g *gatewayProc) metricSum(t *testing.T, name string) float64 {
	t.Helper()
	return (&syncEnv{g: g}).metric(t, name)
}

// TestSyncEchoAfterUserChange: a user changes a deal after hookgate's
// write and before the write's echo is handled; the echo then carries the
// user's state and is delivered. The same write without the user's change
// is suppressed.
func TestSyncEchoAfterUserChange(t *testing.T) {
	t.Parallel()
	e := startSync(t, 50, 20, 10, "", 2)
	for _, deal := range []string{"1", "2"} {
		e.sim.PauseEvents() // the portal's event queue runs late
		gets := e.sim.Requests("crm.deal.get")
		e.send(t, "msg_late_"+deal, map[string]any{"type": "deal.updated", "deal": map[string]any{"id": deal, "title": "platform " + deal}})
		// the write and its read-back (the fingerprint follows at once)
		waitFor(t, "the write of deal "+deal+" and its read-back", 20*time.Second, func() bool { return e.sim.Requests("crm.deal.get") > gets })
		time.Sleep(300 * time.Millisecond)
		if deal == "1" {
			e.sim.SetEventDrop(1) // the user's own event is lost: only the echo can carry the change
			e.sim.Change("deal", 1, map[string]any{"COMMENTS": "changed by a user"}, "")
			e.sim.SetEventDrop(0)
		}
		e.sim.ResumeEvents()
	}
	waitFor(t, "the echo of deal 2 suppressed", 20*time.Second, func() bool {
		return e.metric(t, "hookgate_echo_suppressed_total") >= 1
	})
	waitFor(t, "the echo of deal 1, with the user's change, delivered", 20*time.Second, func() bool {
		return e.plat.has("1", e.sim.Item("deal", 1))
	})
	if got := e.plat.deliveries("1"); len(got) != 1 || got[0]["COMMENTS"] != "changed by a user" || got[0]["TITLE"] != "platform 1" {
		t.Errorf("deal 1 delivered %v; want once, with the platform's title and the user's comment", got)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(e.plat.deliveries("2")); n != 0 {
		t.Errorf("deal 2's echo delivered %d times; want suppressed", n)
	}
	if n := e.metric(t, "hookgate_echo_suppressed_total"); n != 1 {
		t.Errorf("hookgate_echo_suppressed_total = %v; want 1 (deal 2 only)", n)
	}
}
