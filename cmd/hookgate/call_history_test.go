package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

const callPortalSecret = "call-portal-secret-4r8t"

// runCall runs `hookgate call --config path ARGS` with env and returns its
// stdout, stderr and exit status.
func runCall(t *testing.T, path string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"call", "--config", path}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// callSim is a simulated portal with the demo CRM.
func callSim(t *testing.T) (*bitrix24test.Server, string) {
	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", callPortalSecret))
	sim.SeedDemo()
	srv := sim.Start()
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

// TestCallOnItsOwnRecordsHistory: with no gateway running, `call` writes
// one history row per attempt itself (NDJSON files under data_dir/history,
// where `hookgate history` reads them).
func TestCallOnItsOwnRecordsHistory(t *testing.T) {
	sim, simURL := callSim(t)
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.get", Count: 1, Status: 500, Code: "INTERNAL_SERVER_ERROR", Description: "boom"})
	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
portals:
  - {id: main, base_url: %s, user_id: 1, secret: b24/main}
`, simURL))
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("b24/main: {token: "+callPortalSecret+"}\n"), 0o600)
	out, errOut, code := runCall(t, path, nil, "main", "crm.deal.get", "id=1")
	if code != 0 || !strings.Contains(out, `"TITLE"`) {
		t.Fatalf("call: exit %d, %q, stderr %q", code, out, errOut)
	}
	files, _ := history.Files(filepath.Join(dir, "data", "history"))
	type row struct {
		Source, Operation, Outcome, Error, Direction string
		Attempt                                      int
	}
	var rows []row
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r row
			if json.Unmarshal([]byte(line), &r) == nil {
				rows = append(rows, r)
			}
		}
	}
	if n := sim.Requests("crm.deal.get"); len(rows) != n || n != 2 {
		t.Fatalf("history rows %+v; want one per attempt (%d, a 500 then the deal)", rows, n)
	}
	if r := rows[0]; r.Source != "main" || r.Operation != "crm.deal.get" || r.Outcome != "retry" || r.Attempt != 1 || r.Direction != "outbound" {
		t.Errorf("first row %+v; want main crm.deal.get retry attempt 1", r)
	}
	if len(rows) > 1 && (rows[1].Outcome != "ok" || rows[1].Attempt != 2) {
		t.Errorf("second row %+v; want ok attempt 2", rows[1])
	}
}

// TestCallThroughGateway: beside a running gateway with ClickHouse history,
// `hookgate call` goes through the gateway's admin API: one outbound row per
// attempt in ClickHouse, and 80 calls fired at once with the gateway's own
// route traffic share its bucket and draw no QUERY_LIMIT_EXCEEDED from a
// portal enforcing 2 req/s, burst 50 (issue 16).
func TestCallThroughGateway(t *testing.T) {
	sim, simURL := callSim(t)
	chAddr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, chAddr)
	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
history: {clickhouse: {addr: [%q], database: %s}, flush_interval: 200ms}
admin: {token: admin/token}
sources:
  - {id: b24, provider: bitrix24, secret: b24/app}
portals:
  - {id: main, base_url: %s, user_id: 1, secret: b24/main}
routes:
  - name: deal-get
    on: {source: b24, event: ONCRMDEALADD}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}, batch: false}
`, chAddr, db, simURL))
	// batch: false: each route call is one request with one row, as each
	// call of `hookgate call` is (batched route calls: TestMassUpdate)
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(
		"b24/main: {token: "+callPortalSecret+"}\nb24/app: {token: call-app-token-2b6n}\nadmin/token: {token: call-admin-token-9c3v}\n"), 0o600)
	g := startGateway(t, path)
	env := []string{"HOOKGATE_SERVER_LISTEN=" + strings.TrimPrefix(g.URL, "http://"), "HOOKGATE_BUS_LISTEN=" + busListen(g.BusURL)}
	hchHTTP := testenv.ClickHouseHTTP(t)
	rows := func() int {
		out, err := testenv.ClickHouseHTTPQuery(hchHTTP, "SELECT count() FROM "+db+".exchanges WHERE direction = 'outbound' AND source = 'main' AND operation = 'crm.deal.get'", nil)
		if err != nil {
			return 0 // no table before the gateway's first insert
		}
		var n int
		fmt.Sscan(strings.TrimSpace(out), &n)
		return n
	}
	waitRows := func(want int) int {
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := rows()
			if n >= want || time.Now().After(deadline) {
				return n
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	out, errOut, code := runCall(t, path, env, "main", "crm.deal.get", "id=1")
	var got struct{ Result map[string]any }
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Result["ID"] != "1" {
		t.Fatalf("call main crm.deal.get id=1: exit %d, %q, stderr %q", code, out, errOut)
	}
	if n, want := waitRows(1), sim.Requests("crm.deal.get"); n != want || want != 1 {
		t.Errorf("outbound rows = %d; want one per attempt (%d)", n, want)
	}
	if n := strings.Count(fullLog(g), "/admin/call/main/crm.deal.get"); n != 1 {
		t.Errorf("the gateway logged %d admin calls; want 1 (the call went through it)", n)
	}
	if _, err := os.Stat(filepath.Join(g.DataDir, "call")); err == nil {
		t.Errorf("call through the gateway wrote history of its own under data_dir/call")
	}
	out, _, code = runCall(t, path, env, "main", "crm.nope.get")
	if code != 1 || !strings.Contains(out, `"error":"ERROR_METHOD_NOT_FOUND"`) {
		t.Errorf("unknown method through the gateway: exit %d, %q; want 1 and the Bitrix24 error", code, out)
	}
	out, _, code = runCall(t, path, env, "main", "crm.deal.list", "select[]=ID")
	if code != 0 || !strings.Contains(out, `"total": 3`) {
		t.Errorf("crm.deal.list through the gateway: exit %d, %q; want total 3", code, out)
	}

	// 80 calls at once, with the gateway's own route calls
	sim.ResetCounters()
	before := rows()
	const calls, events = 80, 10
	var wg sync.WaitGroup
	failed := make(chan string, calls)
	for i := range calls {
		// 80 race-enabled processes started in the same instant starve the
		// gateway of CPU for seconds on 2 cores, so that requests that took
		// their token reach the portal bunched; 25 ms apart, they are
		// still all waiting in the gateway's bucket at once
		time.Sleep(25 * time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, code := runCall(t, path, env, "main", "crm.deal.get", fmt.Sprintf("id=%d", 1+i%3))
			if code != 0 || !strings.Contains(out, `"TITLE"`) {
				failed <- fmt.Sprintf("exit %d, %.200q, stderr %.300q", code, out, errOut)
			}
		}()
	}
	for i := range events {
		if s, b := post(t, g.URL+"/webhook/b24", formType, bitrixForm("call-app-token-2b6n", fmt.Sprint(1+i%3), fmt.Sprint(1766047124+i)), nil); s != 200 {
			t.Errorf("webhook %d: %d %v", i, s, b)
		}
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Errorf("concurrent call: %s", f)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sim.Answers("") < calls+events && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := strings.Count(fullLog(g), "/admin/call/main/crm.deal.get"); n != 1+calls {
		t.Errorf("the gateway logged %d admin calls; want %d", n, 1+calls)
	}
	if n := sim.Answers(bitrix24test.CodeQueryLimitExceeded); n != 0 {
		t.Errorf("the portal answered QUERY_LIMIT_EXCEEDED %d times; want 0", n)
	}
	if ok := sim.Answers(""); ok != calls+events {
		t.Errorf("the portal answered %d calls; want %d (%d calls, %d route calls)", ok, calls+events, calls, events)
	}
	if n, want := waitRows(before+sim.TotalRequests())-before, sim.TotalRequests(); n != want {
		t.Errorf("outbound rows for the burst = %d; want one per attempt (%d)", n, want)
	}
	t.Logf("%d calls and %d route calls: %d requests at the portal, %d QUERY_LIMIT_EXCEEDED", calls, events, sim.TotalRequests(), sim.Answers(bitrix24test.CodeQueryLimitExceeded))
}

// TestCallBesideGatewayWithoutAdmin: a gateway without the admin API
// cannot take the call; `call` says so on stderr, calls the portal itself
// and records its attempts apart from the gateway's history files.
func TestCallBesideGatewayWithoutAdmin(t *testing.T) {
	sim, simURL := callSim(t)
	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
portals:
  - {id: main, base_url: %s, user_id: 1, secret: b24/main}
`, simURL))
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("b24/main: {token: "+callPortalSecret+"}\n"), 0o600)
	g := startGateway(t, path)
	env := []string{"HOOKGATE_SERVER_LISTEN=" + strings.TrimPrefix(g.URL, "http://")}
	out, errOut, code := runCall(t, path, env, "main", "crm.deal.get", "id=2")
	if code != 0 || !strings.Contains(out, `"ID": "2"`) {
		t.Fatalf("call: exit %d, %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "without the admin API") {
		t.Errorf("stderr %q; want a note that the gateway runs without the admin API", errOut)
	}
	files, _ := filepath.Glob(filepath.Join(g.DataDir, "call", "*", "history", "*.ndjson"))
	var lines int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines += strings.Count(string(b), "\n")
	}
	if want := sim.Requests("crm.deal.get"); lines != want || want != 1 {
		t.Errorf("history rows under data_dir/call = %d; want one per attempt (%d)", lines, want)
	}
}

// fullLog is everything the gateway logged (Log keeps the last 4000 bytes).
func fullLog(g *gatewayProc) string {
	b, _ := os.ReadFile(filepath.Join(g.Dir(), filepath.Base(binPath)+".log"))
	return string(b)
}

// TestCallHelpAndFlagOrder: --help describes call and exits 0; flags work
// after the positional arguments.
func TestCallHelpAndFlagOrder(t *testing.T) {
	out, err := exec.Command(binPath, "call", "--help").Output()
	if err != nil || !strings.Contains(string(out), "/admin/call") || !strings.Contains(string(out), "-config") {
		t.Errorf("call --help: %v, %q; want exit 0, the description and the flags", err, out)
	}
	_, simURL := callSim(t)
	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
portals:
  - {id: main, base_url: %s, user_id: 1, secret: b24/main}
`, simURL))
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("b24/main: {token: "+callPortalSecret+"}\n"), 0o600)
	cmd := exec.Command(binPath, "call", "main", "crm.deal.get", "id=3", "--config", path)
	res, err := cmd.Output()
	if err != nil || !strings.Contains(string(res), `"ID": "3"`) {
		t.Errorf("call main crm.deal.get id=3 --config FILE: %v, %q; want deal 3", err, res)
	}
}
