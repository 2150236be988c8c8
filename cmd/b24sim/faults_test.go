package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// TestEventsAndCommitTimeout: -events-url sends the CRM events of writes
// (a share dropped with -drop-events) and -commit-timeout makes a write
// commit without an answer.
func TestEventsAndCommitTimeout(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		got = append(got, r.PostForm.Get("event")+" "+r.PostForm.Get("data[FIELDS][ID]")+" "+r.PostForm.Get("auth[application_token]"))
		mu.Unlock()
	}))
	defer h.Close()
	hook := start(t, "-events-url", h.URL, "-events-token", "tok", "-drop-events", "0.5",
		"-commit-timeout", "crm.deal.add") + "/rest/1/" + bitrix24test.DefaultSecret + "/"

	c := &http.Client{Timeout: 300 * time.Millisecond}
	if _, err := c.Get(hook + "crm.deal.add.json?fields[TITLE]=A"); err == nil {
		t.Error("first crm.deal.add answered; want no answer (-commit-timeout)")
	}
	for _, id := range []string{"1", "2", "3"} {
		get(t, hook+"crm.deal.update.json?id="+id+"&fields[TITLE]=B")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	// events: ADD 4 (sent), UPDATE 1 (dropped), UPDATE 2 (sent), UPDATE 3 (dropped)
	want := []string{"ONCRMDEALADD 4 tok", "ONCRMDEALUPDATE 2 tok"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events = %q; want %q", got, want)
	}
	if res := get(t, hook+"crm.deal.get.json?id=4")["result"]; res == nil {
		t.Error("deal 4 (the add without an answer) was not committed")
	}
}
