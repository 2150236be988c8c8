package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/standard"
)

const testSecret = hookgate.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

// lines collects what the handler prints (it writes under its own lock).
type lines struct{ bytes.Buffer }

func post(t *testing.T, url, id string, ts time.Time, sig, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/hooks/deals", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(standard.HeaderID, id)
	req.Header.Set(standard.HeaderTimestamp, standard.Timestamp(ts))
	req.Header.Set(standard.HeaderSignature, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func setStatus(t *testing.T, url, status string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+"/status", strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDeliveries(t *testing.T) {
	var out lines
	h := newHandler(testSecret, http.StatusOK, 5*time.Minute, &out)
	now := time.Unix(1766047124, 0)
	h.now = func() time.Time { return now }
	srv := httptest.NewServer(h)
	defer srv.Close()

	body := `{"type":"ONCRMDEALADD","data":{"id":1}}`
	sign := func(secret hookgate.Secret, id string, ts time.Time) string {
		s, err := standard.Sign(secret, id, ts, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other := hookgate.Secret("whsec_" + strings.Repeat("A", 32))

	tests := []struct {
		name   string
		status string // PUT /status first, when set
		id     string
		ts     time.Time
		sig    string
		want   int
		line   string
	}{
		{"signed", "", "msg_1", now, sign(testSecret, "msg_1", now), 200,
			"verified msg_1 (answered 200) " + body},
		{"one of several signatures", "", "msg_2", now, sign(other, "msg_2", now) + " " + sign(testSecret, "msg_2", now), 200,
			"verified msg_2 (answered 200) " + body},
		{"status 500", "500", "msg_3", now, sign(testSecret, "msg_3", now), 500,
			"verified msg_3 (answered 500) " + body},
		{"status 410", "410", "msg_4", now, sign(testSecret, "msg_4", now), 410,
			"verified msg_4 (answered 410) " + body},
		{"wrong secret", "200", "msg_5", now, sign(other, "msg_5", now), 401,
			"BAD SIGNATURE msg_5: no signature matches the secret"},
		{"signed for another id", "", "msg_6", now, sign(testSecret, "msg_1", now), 401,
			"BAD SIGNATURE msg_6: no signature matches the secret"},
		{"old timestamp", "", "msg_7", now.Add(-6 * time.Minute), sign(testSecret, "msg_7", now.Add(-6*time.Minute)), 401,
			"BAD SIGNATURE msg_7: webhook-timestamp"},
		{"no signature", "", "msg_8", now, "", 401,
			"BAD SIGNATURE msg_8: missing"},
	}
	for _, tc := range tests {
		if tc.status != "" {
			if got := setStatus(t, srv.URL, tc.status); got != 200 {
				t.Fatalf("%s: PUT /status %s = %d; want 200", tc.name, tc.status, got)
			}
		}
		out.Reset()
		if got := post(t, srv.URL, tc.id, tc.ts, tc.sig, body); got != tc.want {
			t.Errorf("POST(%s) = %d; want %d", tc.name, got, tc.want)
		}
		if got := out.String(); !strings.HasPrefix(got, tc.line) || strings.Count(got, "\n") != 1 {
			t.Errorf("POST(%s) printed %q; want one line starting %q", tc.name, got, tc.line)
		}
	}
}

func TestStatusControl(t *testing.T) {
	h := newHandler(testSecret, http.StatusOK, time.Minute, &lines{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		body string
		want int
	}{
		{"500", 200}, {" 410\n", 200}, {"abc", 400}, {"99", 400}, {"600", 400},
	} {
		if got := setStatus(t, srv.URL, tc.body); got != tc.want {
			t.Errorf("PUT /status %q = %d; want %d", tc.body, got, tc.want)
		}
	}
	if got := h.status.Load(); got != 410 {
		t.Errorf("status after the PUTs = %d; want 410", got)
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &stdout, &stderr); err != nil {
		t.Fatalf("run(--help) = %v; want nil", err)
	}
	if !strings.HasPrefix(stdout.String(), "receiver: a stand-in") || !strings.Contains(stdout.String(), "-status") {
		t.Errorf("run(--help) printed %q; want the description and the flags", stdout.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},                                // no secret
		{"-secret", "whsec_!!!"},          // not base64
		{"-secret", "s", "-status", "99"}, // no such status
		{"-secret", "s", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err == nil {
			t.Errorf("run(%q) = nil; want an error", args)
		}
	}
}
