package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-help", "--help", "-h"} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{arg}, &out, &errb)
		if err != nil {
			t.Errorf("run(%s) = %v; want nil (exit 0)", arg, err)
		}
		for _, want := range []string{"Bitrix24 portal", "QUERY_LIMIT_EXCEEDED", "-listen", "-seed", "-rate-x", "hookgate call main crm.deal.get id=1"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("run(%s) stdout lacks %q:\n%s", arg, want, out.String())
			}
		}
		if errb.Len() > 0 {
			t.Errorf("run(%s) stderr = %q; want nothing", arg, errb.String())
		}
	}
	var out, errb bytes.Buffer
	var code exitCode
	if err := run(context.Background(), []string{"-nosuch"}, &out, &errb); !errors.As(err, &code) || code != 2 {
		t.Errorf("run(-nosuch) = %v; want exit status 2", err)
	}
	if !strings.Contains(errb.String(), "-nosuch") {
		t.Errorf("run(-nosuch) stderr = %q; want the flag named", errb.String())
	}
}

// lineWriter hands the first line written to it to a channel.
type lineWriter struct {
	once sync.Once
	c    chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.c <- string(p) })
	return len(p), nil
}

// start runs b24sim with args on a free port and returns its base URL.
func start(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &lineWriter{c: make(chan string, 1)}
	go func() { done <- run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), w, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("b24sim stopped with %v", err)
		}
	})
	select {
	case line := <-w.c:
		m := regexp.MustCompile(`portal (http://\S+),`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("b24sim printed %q; want the portal URL", line)
		}
		return m[1]
	case err := <-done:
		t.Fatalf("b24sim stopped: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("b24sim did not start")
	}
	return ""
}

func get(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return out
}

func TestDemoCRM(t *testing.T) {
	hook := start(t) + "/rest/1/" + bitrix24test.DefaultSecret + "/"
	for _, tc := range []struct {
		method, field string
	}{
		{"crm.deal.get", "TITLE"},
		{"crm.contact.get", "LAST_NAME"},
		{"crm.lead.get", "TITLE"},
	} {
		for _, id := range []string{"1", "3"} {
			got := get(t, hook+tc.method+".json?id="+id)
			res, _ := got["result"].(map[string]any)
			if res == nil || res["ID"] != id || res[tc.field] == "" || res[tc.field] == nil {
				t.Errorf("%s id=%s = %v; want a seeded item with %s", tc.method, id, got, tc.field)
			}
		}
	}
	if got := get(t, hook+"crm.deal.list.json"); got["total"] != float64(3) {
		t.Errorf("crm.deal.list total = %v; want 3", got["total"])
	}

	empty := start(t, "-seed=false", "-deals", "2") + "/rest/1/" + bitrix24test.DefaultSecret + "/"
	if got := get(t, empty+"crm.contact.get.json?id=1"); got["error"] == nil {
		t.Errorf("-seed=false: crm.contact.get id=1 = %v; want an error (no contacts)", got)
	}
	if got := get(t, empty+"crm.deal.list.json"); got["total"] != float64(2) {
		t.Errorf("-seed=false -deals 2: crm.deal.list total = %v; want 2", got["total"])
	}
}
