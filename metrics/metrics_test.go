package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/metrics"
	"github.com/hookgate/hookgate/outbound"
)

// families are the metric families issue 8 asks for.
var families = []string{
	"hookgate_inbound_requests_total",
	"hookgate_inbound_duration_seconds",
	"hookgate_outbound_requests_total",
	"hookgate_outbound_duration_seconds",
	"hookgate_jobs_pending",
	"hookgate_jobs_dead",
	"hookgate_history_rows_total",
	"hookgate_history_spool_bytes",
	"hookgate_breaker_state",
	"hookgate_secret_cache_total",
	// issue 17
	"hookgate_batch_commands",
	"hookgate_coalesced_events_total",
	"hookgate_route_lag_seconds",
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sampleValue returns the largest value among a family's samples (for a
// histogram: its _count), and whether any sample exists.
func sampleValue(text, family string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(family) + `(_count)?(\{[^}]*\})? (\S+)$`)
	best, found := 0.0, false
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if strings.HasSuffix(family, "_duration_seconds") && m[1] == "" { // histograms: their _count
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		found = true
		best = max(best, v)
	}
	return best, found
}

func TestEveryFamilyNonZero(t *testing.T) {
	m := metrics.New()
	m.Inbound("bitrix24-deals", "bitrix24", "accepted", 12*time.Millisecond)
	var obs outbound.Observer = m
	obs.ObserveAttempt(outbound.Attempt{Portal: "main", Method: "crm.deal.get", Outcome: "ok", Status: 200, Duration: 40 * time.Millisecond})
	obs.ObserveBreaker("main", "closed", "open")
	m.JobsPending(3)
	m.JobDead()
	m.HistoryRows("written", 10)
	m.SpoolBytes(4096)
	m.Secret("hit")
	m.BatchSize("main", 50)
	m.Coalesced("deal-sync", 5)
	m.RouteLag("deal-sync", 1500*time.Millisecond)

	text := scrape(t, m)
	for _, f := range families {
		v, ok := sampleValue(text, f)
		if !ok {
			t.Errorf("scrape has no samples of %s", f)
		} else if v == 0 {
			t.Errorf("%s = 0 after exercising it; want non-zero", f)
		}
	}
	for _, want := range []string{
		`hookgate_inbound_requests_total{outcome="accepted",provider="bitrix24",source="bitrix24-deals"} 1`,
		`hookgate_outbound_requests_total{operation="crm.deal.get",outcome="ok",portal="main"} 1`,
		`hookgate_breaker_state{portal="main"} 2`,
		`hookgate_history_rows_total{result="written"} 10`,
		`hookgate_secret_cache_total{result="hit"} 1`,
		`hookgate_batch_commands_sum{portal="main"} 50`,
		`hookgate_coalesced_events_total{route="deal-sync"} 4`,
		`hookgate_route_lag_seconds{route="deal-sync"} 1.5`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestBreakerStates(t *testing.T) {
	tests := []struct {
		state string
		want  string
	}{
		{"closed", "0"},
		{"half-open", "1"},
		{"open", "2"},
	}
	m := metrics.New()
	for _, tc := range tests {
		m.BreakerState("p", tc.state)
		want := `hookgate_breaker_state{portal="p"} ` + tc.want + "\n"
		if text := scrape(t, m); !strings.Contains(text, want) {
			t.Errorf("BreakerState(%s): scrape lacks %q", tc.state, want)
		}
	}
}

// Two Metrics values must not share a registry (no globals).
func TestIndependentRegistries(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.Secret("miss")
	if strings.Contains(scrape(t, b), `hookgate_secret_cache_total{result="miss"}`) {
		t.Error("a lookup counted on one Metrics shows on another")
	}
}
