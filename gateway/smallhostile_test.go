package gateway_test

import (
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
)

// formOf returns a urlencoded form of n fields, the event and the token
// among them.
func formOf(n int, id string) string {
	var b strings.Builder
	b.WriteString("event=E&token=" + secretA + "&id=" + id)
	for i := 3; i < n; i++ {
		fmt.Fprintf(&b, "&f%d=v", i)
	}
	return b.String()
}

func multipartOf(n int) (string, string) {
	var b strings.Builder
	w := multipart.NewWriter(&b)
	for i := range n {
		w.WriteField(fmt.Sprintf("f%d", i), "v")
	}
	w.Close()
	return b.String(), w.FormDataContentType()
}

// A form with more fields than server.max_form_fields is refused with 413
// before it is parsed: the work done before the credential is checked is
// one scan of the body, whatever the number of fields.
func TestMaxFormFields(t *testing.T) {
	f := newHardFixture(t, func(s *config.Server) {
		s.MaxBodyBytes = 4 << 20
		s.MaxFormFields = 1000
	}, nil, gateway.Deps{})
	mp, mpType := multipartOf(1001)
	tests := []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{"1000 fields", form, formOf(1000, "f1000"), 200, ""},
		{"1001 fields", form, formOf(1001, "f1001"), 413, `{"error":"body_too_large"}`},
		{"100 000 fields", form, formOf(100_000, "f100000"), 413, `{"error":"body_too_large"}`},
		{"100 000 empty fields", form, "event=E&token=" + secretA + strings.Repeat("&", 100_000), 413, `{"error":"body_too_large"}`},
		{"1001 multipart parts", mpType, mp, 413, `{"error":"body_too_large"}`},
		{"JSON with many ampersands", "application/json", `{"a":"` + strings.Repeat("&", 5000) + `"}`, 415, ""},
	}
	for _, tc := range tests {
		start := time.Now()
		req, _ := http.NewRequest("POST", f.url+"/webhook/a", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.want != "" && string(b) != tc.want) {
			t.Errorf("%s: %d %.200s; want %d %s", tc.name, resp.StatusCode, b, tc.status, tc.want)
		}
		t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
	}
}

// rawAnswer writes raw to a new connection and reads the answer.
func rawAnswer(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw) // may fail once the server has answered and closed
	}()
	return readAnswer(t, c, 5*time.Second)
}

// Malformed and odd requests get the answers table's codes, each with the
// JSON error body, never fasthttp's or Fiber's plain text.
func TestOddRequests(t *testing.T) {
	f := newHardFixture(t, nil, nil, gateway.Deps{})
	body := "event=E&token=" + secretA + "&id=odd"
	post := func(path string, hdrs ...string) string {
		h := ""
		for _, x := range hdrs {
			h += x + "\r\n"
		}
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%s\r\n%s", path, form, h, body)
	}
	cl := fmt.Sprintf("Content-Length: %d", len(body))
	tests := []struct {
		name, raw string
		status    int
		body      string
		hdr       map[string]string // expected answer headers
	}{
		{"two differing Content-Length", post("/webhook/a", cl, "Content-Length: 10"),
			400, `{"error":"bad_request","message":"conflicting Content-Length headers"}`, map[string]string{"Connection": "close"}},
		{"differing Content-Length, other case", post("/webhook/a", "Content-Length: 10", "content-length: "+fmt.Sprint(len(body))),
			400, `{"error":"bad_request","message":"conflicting Content-Length headers"}`, nil},
		{"differing Content-Length off the webhook routes", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 3\r\n\r\nabc",
			400, `{"error":"bad_request","message":"conflicting Content-Length headers"}`, nil},
		{"two equal Content-Length", post("/webhook/a", cl, cl), 200, "", nil},
		{"unknown method", "FOO /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
			405, `{"error":"method_not_allowed"}`, map[string]string{"Allow": "POST"}},
		{"unknown method, unknown source", "FOO /webhook/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
			405, `{"error":"method_not_allowed"}`, map[string]string{"Allow": "POST"}},
		{"unknown method off the webhook routes", "FOO /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
			400, `{"error":"bad_request","message":"unknown method"}`, nil},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			400, `{"error":"bad_request","message":"HTTP/2 with prior knowledge is not served: use HTTP/1.1"}`, map[string]string{"Connection": "close"}},
		{"empty api key", post("/webhooks/", cl), 404, `{"error":"unknown_source"}`, nil},
		{"no api key segment", post("/webhooks", cl), 404, `{"error":"unknown_source"}`, nil},
		{"empty api key, GET", "GET /webhooks/ HTTP/1.1\r\nHost: x\r\n\r\n", 405, `{"error":"method_not_allowed"}`, map[string]string{"Allow": "POST"}},
		{"empty source id", post("/webhook/", cl), 404, `{"error":"unknown_source"}`, nil},
		{"double slash before webhook", post("//webhook/a", cl), 404, `{"error":"unknown_source"}`, nil},
		{"double slash before the id", post("/webhook//a", cl), 404, `{"error":"unknown_source"}`, nil},
		{"double slash, GET", "GET //webhook/a HTTP/1.1\r\nHost: x\r\n\r\n", 405, `{"error":"method_not_allowed"}`, nil},
	}
	for _, tc := range tests {
		resp, got := rawAnswer(t, f.addr, tc.raw)
		if resp.StatusCode != tc.status || (tc.body != "" && got != tc.body) {
			t.Errorf("%s: %d %s; want %d %s", tc.name, resp.StatusCode, got, tc.status, tc.body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q; want application/json", tc.name, ct)
		}
		for k, v := range tc.hdr {
			if k == "Connection" {
				if !resp.Close {
					t.Errorf("%s: connection kept open; want it closed", tc.name)
				}
				continue
			}
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s: %q; want %q", tc.name, k, got, v)
			}
		}
	}
}

// A request answered 408 (not read within read_timeout) or 431 (header over
// the limit) has its history row: method, path (no query: it may hold a
// credential), status, no body. A connection that sent nothing has none.
func TestDroppedRequestRows(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	f := newHardFixture(t, func(s *config.Server) {
		s.ReadTimeout = config.Duration(readTimeout)
		s.MaxHeaderBytes = 8 << 10
	}, nil, gateway.Deps{})
	pad := strings.Repeat("p", 64<<10)
	tests := []struct {
		name, raw string
		status    int
		url       string // "" = no row
	}{
		{"body cut short", "POST /webhook/a?token=" + secretA + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + form +
			"\r\nContent-Length: 100\r\n\r\nevent=E&token=" + secretA, 408, "/webhook/a"},
		{"header never ended", "POST /webhook/a HTTP/1.1\r\nHost: x\r\nX-Slow: a", 408, "/webhook/a"},
		{"header too large", "POST /webhook/a?token=" + secretA + " HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + "\r\n\r\n", 431, "/webhook/a"},
		{"header too large, api key path", "POST /webhooks/" + secretA + " HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + "\r\n\r\n", 431, "/webhooks/[redacted]"},
		{"header too large, not a webhook", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + "\r\n\r\n", 431, ""},
		{"silent connection", "", 408, ""},
	}
	for _, tc := range tests {
		f.rec.mu.Lock()
		before := len(f.rec.rows)
		f.rec.mu.Unlock()
		resp, _ := rawAnswer(t, f.addr, tc.raw)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d; want %d", tc.name, resp.StatusCode, tc.status)
		}
		f.rec.mu.Lock()
		rows := append([]hookgate.Exchange(nil), f.rec.rows[before:]...)
		f.rec.mu.Unlock()
		switch {
		case tc.url == "" && len(rows) != 0:
			t.Errorf("%s: %d history rows %+v; want none", tc.name, len(rows), rows)
		case tc.url == "":
		case len(rows) != 1:
			t.Errorf("%s: %d history rows; want 1", tc.name, len(rows))
		default:
			r := rows[0]
			if r.URL != tc.url || r.HTTPMethod != "POST" || int(r.Status) != tc.status || r.RequestBody != "" || r.Outcome != "rejected" {
				t.Errorf("%s: row %s %s status %d outcome %s body %q; want POST %s status %d, rejected, no body",
					tc.name, r.HTTPMethod, r.URL, r.Status, r.Outcome, r.RequestBody, tc.url, tc.status)
			}
			if strings.Contains(fmt.Sprintf("%+v", r), secretA) {
				t.Errorf("%s: row holds the secret: %+v", tc.name, r)
			}
		}
	}
}
