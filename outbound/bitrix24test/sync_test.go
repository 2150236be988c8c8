package bitrix24test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// handlerRecorder is an outgoing-webhook handler that keeps the forms.
type handlerRecorder struct {
	mu    sync.Mutex
	forms []url.Values
}

func (h *handlerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h.mu.Lock()
	h.forms = append(h.forms, r.PostForm)
	h.mu.Unlock()
}

func (h *handlerRecorder) all() []url.Values {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]url.Values(nil), h.forms...)
}

func TestEventsAndDrop(t *testing.T) {
	h := &handlerRecorder{}
	hs := httptest.NewServer(h)
	defer hs.Close()
	sim := NewServer(WithRate(0, 0), WithEventHandler(EventHandler{URL: hs.URL, Token: "app-token", Drop: 0.25}))
	defer sim.Close()
	ts := sim.Start()
	defer ts.Close()

	req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.add.json?fields[TITLE]=A", nil)
	if status, e := do(t, req); status != 200 || string(e.Result) != "1" {
		t.Fatalf("add = %d %s", status, e.Result)
	}
	for i := 0; i < 7; i++ {
		if !sim.Change("deal", 1, map[string]any{"TITLE": "B"}, "") {
			t.Fatal("Change of deal 1 failed")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sim.WaitEvents(ctx); err != nil {
		t.Fatal(err)
	}
	sent, dropped, failed := sim.EventCounts()
	forms := h.all()
	if sent != 6 || dropped != 2 || failed != 0 || len(forms) != 6 {
		t.Fatalf("sent %d, dropped %d, failed %d, received %d; want 6, 2, 0, 6", sent, dropped, failed, len(forms))
	}
	if f := forms[0]; f.Get("event") != "ONCRMDEALADD" || f.Get("data[FIELDS][ID]") != "1" || f.Get("auth[application_token]") != "app-token" {
		t.Errorf("first event = %v; want ONCRMDEALADD of deal 1 with the token", f)
	}
	if f := forms[1]; f.Get("event") != "ONCRMDEALUPDATE" {
		t.Errorf("second event = %v; want ONCRMDEALUPDATE", f)
	}
	item := sim.Item("deal", 1)
	if item["MODIFY_BY_ID"] != DefaultUserID || item["CREATED_BY_ID"] != DefaultUser {
		t.Errorf("deal 1 = %v; want created by %s, modified by %s", item, DefaultUser, DefaultUserID)
	}
}

func TestDateAndOriginFilters(t *testing.T) {
	now := time.Date(2026, 5, 14, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sim := NewServer(WithRate(0, 0), WithClock(clock))
	ts := sim.Start()
	defer ts.Close()
	add := func(q string) {
		req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.add.json?"+q, nil)
		if status, e := do(t, req); status != 200 {
			t.Fatalf("add %s = %d %v", q, status, e.Error)
		}
	}
	add("fields[TITLE]=old")
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	add("fields[TITLE]=new&fields[ORIGINATOR_ID]=platform&fields[ORIGIN_ID]=77")

	// 12:30+02:00 is 10:30Z: after "old" (10:00Z), before "new" (12:00Z),
	// which a comparison of the text would get wrong
	q := url.Values{}
	q.Set("filter[>DATE_MODIFY]", "2026-05-14T12:30:00+02:00")
	q.Set("select[]", "ID")
	req, _ := http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.list.json?"+q.Encode(), nil)
	if _, e := do(t, req); strings.TrimSpace(string(e.Result)) != `[{"ID":"2"}]` {
		t.Errorf(">DATE_MODIFY = %s; want deal 2 only", e.Result)
	}
	q = url.Values{}
	q.Set("filter[=ORIGINATOR_ID]", "platform")
	q.Set("filter[=ORIGIN_ID]", "77")
	q.Set("select[]", "ID")
	req, _ = http.NewRequest(http.MethodGet, base(ts.URL)+"crm.deal.list.json?"+q.Encode(), nil)
	if _, e := do(t, req); strings.TrimSpace(string(e.Result)) != `[{"ID":"2"}]` {
		t.Errorf("ORIGIN filter = %s; want deal 2", e.Result)
	}
}

func TestAfterCommitFault(t *testing.T) {
	sim := NewServer(WithRate(0, 0))
	sim.InjectFault(Fault{Method: "crm.deal.add", AfterCommit: true, Latency: 5 * time.Second})
	ts := sim.Start()
	defer ts.Close()
	c := &http.Client{Timeout: 200 * time.Millisecond}
	_, err := c.Get(base(ts.URL) + "crm.deal.add.json?fields[TITLE]=A")
	if err == nil {
		t.Fatal("add with an AfterCommit fault answered")
	}
	if sim.Count("deal") != 1 {
		t.Errorf("%d deals; want 1 (committed)", sim.Count("deal"))
	}
}
