package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/jobs"
)

// TestTwoInstances runs two gateways against one external NATS server and
// one ClickHouse (issue 8): a source created through A's admin API is
// served by B within 1 s, and route jobs are each executed exactly once
// across the pair.
func TestTwoInstances(t *testing.T) {
	chAddr := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, chAddr)
	busURL := testenv.NATSServer(t)
	var mu sync.Mutex
	seen := map[string]int{}
	plat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer plat.Close()

	const adminTok = "two-admin-token-8s1d"
	start := func(name string) *gatewayProc {
		path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
bus: {url: "%s"}
history:
  clickhouse: {addr: ["%s"], database: %s}
  flush_interval: 200ms
retry: {schedule: [200ms, 400ms], workers: 8}
admin: {token: admin/token}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
routes:
  - name: fanout
    on: {source: "*", event: "*"}
    deliver: {url: "%s/in", secret: platform/signing}
`, busURL, chAddr, db, plat.URL))
		if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(`
admin/token: {token: `+adminTok+`}
b24/token: {token: two-b24-token-4f7g}
runtime/token: {token: runtime-token-1q2w}
platform/signing: {token: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
`), 0o600); err != nil {
			t.Fatal(err)
		}
		return startGateway(t, path)
	}
	a, b := start("a"), start("b")

	// a runtime source through A, served by B within 1 s
	req, err := http.NewRequest("PUT", a.URL+"/admin/sources/rt", strings.NewReader(`{"provider":"token","secret":"runtime/token","event":"rt.ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT /admin/sources/rt on A: %d", resp.StatusCode)
	}
	created := time.Now()
	var took time.Duration
	for {
		status, _ := post(t, b.URL+"/webhook/rt?token=runtime-token-1q2w", "application/json", `{"ping":1}`, nil)
		if status == 200 {
			took = time.Since(created)
			break
		}
		if time.Since(created) > time.Second {
			t.Fatalf("B still answers %d for the runtime source 1 s after A created it", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("runtime source created on A served by B after %v", took)

	// 1,000 events split across A and B: every route job runs exactly once
	const n = 1000
	var wg sync.WaitGroup
	accepted := make(chan string, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				g := a
				if i%2 == 1 {
					g = b
				}
				status, body := post(t, g.URL+"/webhook/b24", formType, bitrixForm("two-b24-token-4f7g", strconv.Itoa(i), strconv.Itoa(1767000000+i)), nil)
				if status == 200 && body["status"] == "accepted" {
					accepted <- body["id"]
				}
			}
		}(w)
	}
	wg.Wait()
	close(accepted)
	want := map[string]bool{}
	for id := range accepted {
		want[id+"/fanout"] = true
	}
	if len(want) != n {
		t.Fatalf("%d of %d events accepted", len(want), n)
	}
	waitFor(t, "every job delivered", 120*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		got := 0
		for id := range want {
			if seen[id] > 0 {
				got++
			}
		}
		return got == n
	})
	// No sleep-and-hope for a second execution: wait until the jobs
	// stream is empty (work-queue retention: every job acknowledged, none
	// left to redeliver), then stop both gateways (a graceful stop waits
	// for running jobs). After that nothing can reach the platform, and
	// a second execution has shown up if there was one.
	waitJobsDone(t, busURL)
	a.Stop()
	b.Stop()
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for id := range want {
		if seen[id] != 1 {
			twice++
		}
	}
	if twice != 0 {
		t.Errorf("%d of %d jobs executed more than once across the two instances", twice, n)
	}
	t.Logf("%d jobs across two instances, each delivered exactly once", n)
}

// waitJobsDone waits until the jobs stream on the bus at busURL holds no
// job and no lane is left: each job was admitted to its key's lane, run,
// and removed from it by the instance that ran it.
func waitJobsDone(t *testing.T, busURL string) {
	t.Helper()
	nc, err := nats.Connect(busURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an empty jobs stream", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, jobs.DefaultStream)
		if err != nil {
			t.Logf("jobs stream: %v", err)
			return false
		}
		if s.CachedInfo().State.Msgs != 0 {
			return false
		}
		kv, err := js.KeyValue(ctx, jobs.DefaultLaneBucket)
		if err != nil {
			t.Logf("lanes bucket: %v", err)
			return false
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		for range keys.Keys() {
			return false
		}
		return true
	})
}
