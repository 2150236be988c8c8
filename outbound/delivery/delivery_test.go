package delivery_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/outbound/delivery"
	"github.com/hookgate/hookgate/outbound/delivery/deliverytest"
)

// recorder collects history rows.
type recorder struct {
	mu   sync.Mutex
	rows []hookgate.Exchange
}

func (r *recorder) Record(x hookgate.Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, x)
}

func (r *recorder) all() []hookgate.Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookgate.Exchange(nil), r.rows...)
}

// capture is a platform endpoint that keeps the last request.
type capture struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
	answer func(w http.ResponseWriter)
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.header, c.body = r.Header.Clone(), b
	answer := c.answer
	c.mu.Unlock()
	if answer != nil {
		answer(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *capture) last() (http.Header, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header, c.body
}

// TestSignatureVerifiesWithStandardWebhooks sends real deliveries and has
// the npm standardwebhooks package verify what the endpoint received.
func TestSignatureVerifiesWithStandardWebhooks(t *testing.T) {
	v := deliverytest.NewVerifier(t)
	platform := &capture{}
	srv := httptest.NewServer(platform)
	defer srv.Close()
	c := delivery.New()
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte("platform-signing-key-0123456789"))
	tests := []struct {
		name   string
		secret string
		raw    bool
	}{
		{"whsec secret", whsec, false},
		{"raw secret", "plain-shared-secret", true},
	}
	body := []byte(`{"specversion":"1.0","id":"e1","data":{"title":"Deal \"9\" — ünïcode"}}`)
	for _, tc := range tests {
		if _, err := c.Deliver(context.Background(), srv.URL+"/hooks/deals", hookgate.Secret(tc.secret), "job-1/route", body); err != nil {
			t.Fatalf("Deliver(%s): %v", tc.name, err)
		}
		h, got := platform.last()
		if h.Get("Content-Type") != "application/json" || h.Get("webhook-id") != "job-1/route" {
			t.Errorf("Deliver(%s) headers = %v; want JSON with webhook-id job-1/route", tc.name, h)
		}
		if ok, out := v.Verify(t, tc.secret, tc.raw, h, got); !ok {
			t.Errorf("standardwebhooks.verify(%s) failed: %s", tc.name, out)
		}
		tampered := append([]byte(nil), got...)
		tampered[len(tampered)-2] = 'X'
		if ok, _ := v.Verify(t, tc.secret, tc.raw, h, tampered); ok {
			t.Errorf("standardwebhooks.verify(%s, tampered body) passed; want a failure", tc.name)
		}
	}
}

func TestOutcomes(t *testing.T) {
	now := time.Date(2026, 5, 14, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter)
		last       bool
		wantErr    bool
		wantGone   bool
		wantAfter  time.Duration
		wantStatus uint16
		wantOut    string
		wantCode   string
	}{
		{name: "200", answer: func(w http.ResponseWriter) { w.WriteHeader(200) }, wantStatus: 200, wantOut: "ok"},
		{name: "202", answer: func(w http.ResponseWriter) { w.WriteHeader(202) }, wantStatus: 202, wantOut: "ok"},
		{name: "410", answer: func(w http.ResponseWriter) { w.WriteHeader(410) }, wantErr: true, wantGone: true, wantStatus: 410, wantOut: "failed", wantCode: "gone"},
		{name: "503 retry-after seconds", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
		}, wantErr: true, wantAfter: 7 * time.Second, wantStatus: 503, wantOut: "retry", wantCode: "http_503"},
		{name: "429 retry-after date", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(429)
		}, wantErr: true, wantAfter: 90 * time.Second, wantStatus: 429, wantOut: "retry", wantCode: "http_429"},
		{name: "500 last attempt", answer: func(w http.ResponseWriter) { w.WriteHeader(500) }, last: true, wantErr: true, wantStatus: 500, wantOut: "dead", wantCode: "http_500"},
		{name: "redirect not followed", answer: func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(302)
		}, wantErr: true, wantStatus: 302, wantOut: "retry", wantCode: "http_302"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			platform := &capture{answer: tc.answer}
			srv := httptest.NewServer(platform)
			defer srv.Close()
			rec := &recorder{}
			c := delivery.New(delivery.WithRecorder(rec), delivery.WithClock(func() time.Time { return now }))
			ctx := delivery.WithMeta(context.Background(), delivery.Meta{Source: "deal-sync", Event: "ONCRMDEALADD", EventID: "ev-1", Attempt: 3, Last: tc.last})
			resp, err := c.Deliver(ctx, srv.URL+"/hooks?token=s3cr3t-query&x=1", hookgate.Secret("whsec_c2VjcmV0"), "ev-1/deal-sync", []byte(`{"a":1}`))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Deliver(%s) = %v, %v; want error %v", tc.name, resp, err, tc.wantErr)
			}
			if got := errors.Is(err, delivery.ErrGone); got != tc.wantGone {
				t.Errorf("errors.Is(Deliver(%s), ErrGone) = %v; want %v", tc.name, got, tc.wantGone)
			}
			if d, _ := delivery.RetryAfter(err); d != tc.wantAfter {
				t.Errorf("RetryAfter(Deliver(%s)) = %v; want %v", tc.name, d, tc.wantAfter)
			}
			rows := rec.all()
			if len(rows) != 1 {
				t.Fatalf("Deliver(%s) recorded %d rows; want 1", tc.name, len(rows))
			}
			r := rows[0]
			if r.Status != tc.wantStatus || r.Outcome != tc.wantOut || r.Error != tc.wantCode {
				t.Errorf("row(%s) status/outcome/error = %d/%s/%q; want %d/%s/%q", tc.name, r.Status, r.Outcome, r.Error, tc.wantStatus, tc.wantOut, tc.wantCode)
			}
			if r.Direction != hookgate.Outbound || r.Provider != "http" || r.Source != "deal-sync" || r.Operation != "deliver" ||
				r.EventID != "ev-1" || r.Event != "ONCRMDEALADD" || r.Attempt != 3 || r.HTTPMethod != "POST" || !r.TS.Equal(now) {
				t.Errorf("row(%s) = %+v; want outbound http deliver of ev-1, attempt 3", tc.name, r)
			}
			if strings.Contains(r.URL, "s3cr3t-query") || !strings.Contains(r.URL, "token=[redacted]") {
				t.Errorf("row(%s).URL = %q; want the token redacted", tc.name, r.URL)
			}
			h, _ := platform.last()
			if sig := h.Get("webhook-signature"); sig == "" || strings.Contains(r.RequestHeaders, sig) || !strings.Contains(r.RequestHeaders, `"webhook-signature":"[redacted]"`) {
				t.Errorf("row(%s).RequestHeaders = %s; want the signature redacted", tc.name, r.RequestHeaders)
			}
			if r.RequestBody != `{"a":1}` {
				t.Errorf("row(%s).RequestBody = %q", tc.name, r.RequestBody)
			}
		})
	}
}

func TestTransportFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so that the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/hooks"
	ln.Close()

	tests := []struct {
		name     string
		url      string
		wantCode string
	}{
		{"timeout", slow.URL, "timeout"},
		{"connection refused", closed, "network"},
	}
	for _, tc := range tests {
		rec := &recorder{}
		c := delivery.New(delivery.WithRecorder(rec), delivery.WithTimeout(100*time.Millisecond))
		_, err := c.Deliver(context.Background(), tc.url, hookgate.Secret("secret-key"), "id", []byte(`{}`))
		if err == nil {
			t.Errorf("Deliver(%s) = nil error; want a failure", tc.name)
			continue
		}
		rows := rec.all()
		if len(rows) != 1 || rows[0].Error != tc.wantCode || rows[0].Outcome != "retry" || rows[0].Status != 0 {
			t.Errorf("Deliver(%s) rows = %+v; want one retry row with %q and status 0", tc.name, rows, tc.wantCode)
		}
	}
}
