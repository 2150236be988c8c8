package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers"
)

const secretA = "s3cret-token-a"

type hardFixture struct {
	url     string
	addr    string // host:port
	gw      *gateway.Gateway
	rec     *recorder
	secrets *testenv.Secrets
}

// newHardFixture serves a gateway with server config scfg (from
// config.Default when nil fields) and sources on a fresh embedded bus.
func newHardFixture(t testing.TB, mutate func(*config.Server), sources []config.Source, d gateway.Deps) *hardFixture {
	t.Helper()
	bus := newBus(t)
	reg := providers.NewRegistry()
	reg.Register("form", func(config.Source) (providers.Provider, error) { return formProvider{}, nil })
	reg.Register("key", func(config.Source) (providers.Provider, error) { return keyProvider{}, nil })
	sec := testenv.NewSecrets(map[string]string{"a/token": secretA})
	rec := &recorder{}
	scfg := config.Default().Server
	scfg.MaxBodyBytes = 1024
	if mutate != nil {
		mutate(&scfg)
	}
	if sources == nil {
		sources = []config.Source{{ID: "a", Provider: "form", Secret: "a/token"}}
	}
	d.Registry, d.Secrets, d.Bus, d.Recorder = reg, sec, bus, rec
	gw, err := gateway.New(scfg, sources, d)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveFiber(t, gw)
	return &hardFixture{url: srv.URL, addr: srv.Listener.Addr().String(), gw: gw, rec: rec, secrets: sec}
}

func postForm(t *testing.T, client *http.Client, url, body string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", form)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// A slowloris client holding 200 connections open with a trickle of header
// bytes does not stop normal requests, and its connections are dropped
// once the read timeout has passed.
func TestSlowlorisDoesNotStarve(t *testing.T) {
	const readTimeout = time.Second
	f := newHardFixture(t, func(s *config.Server) { s.ReadTimeout = config.Duration(readTimeout) }, nil, gateway.Deps{})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var opened, dropped atomic.Int32
	droppedAfter := make(chan time.Duration, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			opened.Add(1)
			start := time.Now()
			if _, err := fmt.Fprintf(c, "POST /webhook/a HTTP/1.1\r\nHost: x\r\nX-Slow-%d: ", i); err != nil {
				return
			}
			// one byte every 100 ms, never ending the header
			for ctx.Err() == nil {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("a")); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				var b [512]byte
				if _, err := c.Read(b[:]); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue // still open: keep trickling
					}
					break // answered or closed by the server
				}
				break
			}
			if ctx.Err() == nil {
				dropped.Add(1)
				droppedAfter <- time.Since(start)
			}
		}()
	}
	// wait for the slow connections to be open, then ask normally
	for deadline := time.Now().Add(3 * time.Second); opened.Load() < 200 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := opened.Load(); n < 200 {
		t.Fatalf("only %d of 200 slow connections opened", n)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for i := range 20 {
		start := time.Now()
		status, body, _ := postForm(t, client, f.url+"/webhook/a", fmt.Sprintf("event=E&token=%s&id=n%d", secretA, i), nil)
		if status != 200 {
			t.Errorf("normal request %d during the slowloris = %d %s; want 200", i, status, body)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("normal request %d took %v during the slowloris", i, d)
		}
	}
	// every slow connection is dropped by the read timeout, not later
	deadline := time.After(readTimeout + 3*time.Second)
	for dropped.Load() < 200 {
		select {
		case <-deadline:
			t.Fatalf("%d of 200 slow connections dropped within %v", dropped.Load(), readTimeout+3*time.Second)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	wg.Wait()
	close(droppedAfter)
	var longest time.Duration
	for d := range droppedAfter {
		longest = max(longest, d)
	}
	if longest > readTimeout+2*time.Second {
		t.Errorf("a slow connection lived %v; read timeout is %v", longest, readTimeout)
	}
}

// TestReadTimeoutAnswer: a request not read whole within read_timeout is
// answered 408 request_timeout (retryable), not 400 bad_request (which a
// sender takes as "do not send again"); a connection that stays silent
// that long gets the same 408. (Its history row: TestDroppedRequestRows.)
func TestReadTimeoutAnswer(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	f := newHardFixture(t, func(s *config.Server) { s.ReadTimeout = config.Duration(readTimeout) }, nil, gateway.Deps{})
	answer := func(send string) (status int, body string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if send != "" {
			if _, err := io.WriteString(c, send); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(readTimeout + 5*time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer after the read timeout: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// the header and half of the body, then nothing
	partial := "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: " + form +
		"\r\nContent-Length: 100\r\n\r\nevent=E&token=" + secretA
	if status, body := answer(partial); status != 408 || body != `{"error":"request_timeout"}` {
		t.Errorf("body cut short: %d %s; want 408 request_timeout", status, body)
	}
	if status, body := answer(""); status != 408 || body != `{"error":"request_timeout"}` {
		t.Errorf("silent connection: %d %s; want 408 request_timeout", status, body)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	f := newHardFixture(t, func(s *config.Server) { s.MaxHeaderBytes = 8 << 10 }, nil, gateway.Deps{})
	tests := []struct {
		name   string
		size   int
		status int
		code   string
	}{
		{"under the limit", 4 << 10, 200, ""},
		{"over the limit", 64 << 10, 431, "header_too_large"},
	}
	for i, tc := range tests {
		hdr := map[string]string{"X-Pad": strings.Repeat("p", tc.size), "X-Api-Key": secretA}
		try := 0
		resp, err := doRetryingReset(func() *http.Request {
			try++
			req, _ := http.NewRequest("POST", f.url+"/webhook/a", strings.NewReader(fmt.Sprintf("event=E&token=%s&id=h%d-%d", secretA, i, try)))
			req.Header.Set("Content-Type", form)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			return req
		})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status, body := resp.StatusCode, string(b)
		if status != tc.status || (tc.code != "" && body != `{"error":"`+tc.code+`"}`) {
			t.Errorf("%s: %d %s; want %d %q", tc.name, status, body, tc.status, tc.code)
		}
		if strings.Contains(body, secretA) {
			t.Errorf("%s: answer holds the secret: %s", tc.name, body)
		}
	}
}

// doRetryingReset sends the request build makes, again (up to 5 times)
// when the connection was reset. A server that refuses an oversized header
// answers and closes while the client may still be writing the rest; the
// close can reset the connection before the client reads the answer.
func doRetryingReset(build func() *http.Request) (*http.Response, error) {
	var err error
	for try := 0; try < 5; try++ {
		var resp *http.Response
		resp, err = http.DefaultClient.Do(build())
		if err == nil || !strings.Contains(err.Error(), "connection reset") {
			return resp, err
		}
	}
	return nil, err
}

// readAnswer reads an HTTP answer's status line and body from a raw conn.
func readAnswer(t *testing.T, c net.Conn, timeout time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", timeout, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// A 10 MB body over a small limit is refused while it is being sent: the
// answer comes after the first bytes, not after the whole body.
func TestBodyLimitWhileReading(t *testing.T) {
	f := newHardFixture(t, nil, nil, gateway.Deps{})
	const total = 10 << 20

	t.Run("content-length", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", form, total)
		c.Write([]byte(strings.Repeat("x", 4096))) // 4 KiB of 10 MiB
		resp, body := readAnswer(t, c, 2*time.Second)
		if resp.StatusCode != 413 || body != `{"error":"body_too_large"}` {
			t.Errorf("10 MB body, 1 KiB limit: %d %s; want 413 body_too_large", resp.StatusCode, body)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("answer took %v", d)
		}
	})

	t.Run("chunked", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", form)
		var sent atomic.Int64
		stop := make(chan struct{})
		writerDone := make(chan struct{})
		go func() {
			defer close(writerDone)
			chunk := fmt.Sprintf("1000\r\n%s\r\n", strings.Repeat("y", 0x1000))
			for sent.Load() < total {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := io.WriteString(c, chunk); err != nil {
					return // closed by the server
				}
				sent.Add(0x1000)
				time.Sleep(time.Millisecond) // a client sending steadily
			}
		}()
		resp, body := readAnswer(t, c, 3*time.Second)
		close(stop)
		<-writerDone
		if resp.StatusCode != 413 || body != `{"error":"body_too_large"}` {
			t.Errorf("chunked 10 MB body, 1 KiB limit: %d %s; want 413 body_too_large", resp.StatusCode, body)
		}
		if n := sent.Load(); n >= total {
			t.Errorf("the server answered only after the whole body (%d bytes)", n)
		} else {
			t.Logf("answered after %d of %d bytes in %v", n, total, time.Since(start).Round(time.Millisecond))
		}
	})
}

// X-Forwarded-For sets remote_addr only when the peer is a trusted proxy,
// and then only the hops the proxies added are believed.
func TestForwardedForTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		xff     string
		want    string
	}{
		{"no trusted proxies: header ignored", nil, "203.0.113.7", "127.0.0.1"},
		{"untrusted peer: header ignored", []string{"10.0.0.0/8"}, "203.0.113.7", "127.0.0.1"},
		{"trusted peer", []string{"127.0.0.1"}, "203.0.113.7", "203.0.113.7"},
		{"trusted CIDR", []string{"127.0.0.0/8"}, "203.0.113.7", "203.0.113.7"},
		{"client-written hops not believed", []string{"127.0.0.1"}, "198.51.100.1, 203.0.113.7", "203.0.113.7"},
		{"trusted hops skipped", []string{"127.0.0.1", "10.0.0.0/8"}, "203.0.113.7, 10.1.2.3", "203.0.113.7"},
		{"malformed hop", []string{"127.0.0.1"}, "garbage", "127.0.0.1"},
		{"no header behind a proxy", []string{"127.0.0.1"}, "", "127.0.0.1"},
		{"ipv6 client", []string{"127.0.0.1"}, "2001:db8::1", "2001:db8::1"},
	}
	for _, tc := range tests {
		f := newHardFixture(t, func(s *config.Server) { s.TrustedProxies = tc.trusted }, nil, gateway.Deps{})
		client := &http.Client{}
		hdr := map[string]string{}
		if tc.xff != "" {
			hdr["X-Forwarded-For"] = tc.xff
		}
		// two requests on one keep-alive connection: the second has no
		// header, and must not inherit the first one's address
		postForm(t, client, f.url+"/webhook/a", "event=E&token="+secretA+"&id=1", hdr)
		postForm(t, client, f.url+"/webhook/a", "event=E&token="+secretA+"&id=2", nil)
		f.rec.mu.Lock()
		rows := append([]string(nil), f.rec.rows[0].RemoteAddr, f.rec.rows[1].RemoteAddr)
		f.rec.mu.Unlock()
		if rows[0] != tc.want {
			t.Errorf("%s: remote_addr = %q; want %q", tc.name, rows[0], tc.want)
		}
		if rows[1] != "127.0.0.1" {
			t.Errorf("%s: next request on the connection: remote_addr = %q; want 127.0.0.1", tc.name, rows[1])
		}
	}
}

// The per-source rate limit answers 429 rate_limited with Retry-After for
// the noisy source while another source keeps being served, and survives a
// change of the runtime sources.
func TestPerSourceRateLimit(t *testing.T) {
	f := newHardFixture(t, nil, []config.Source{
		{ID: "noisy", Provider: "form", Secret: "a/token", Rate: &config.Rate{PerSecond: 0.5, Burst: 3}},
		{ID: "calm", Provider: "form", Secret: "a/token"},
	}, gateway.Deps{})
	var ok, limited int
	for i := range 20 {
		status, body, hdr := postForm(t, http.DefaultClient, f.url+"/webhook/noisy", fmt.Sprintf("event=E&token=%s&id=n%d", secretA, i), nil)
		switch status {
		case 200:
			ok++
		case 429:
			limited++
			if body != `{"error":"rate_limited"}` || hdr.Get("Retry-After") == "" {
				t.Errorf("429 answer %s, Retry-After %q", body, hdr.Get("Retry-After"))
			}
		default:
			t.Errorf("noisy request %d = %d %s", i, status, body)
		}
		if i == 10 {
			// a runtime change rebuilds the table; the bucket stays spent
			if err := f.gw.SetRuntimeSources([]config.Source{{ID: "other", Provider: "form", Secret: "a/token"}}); err != nil {
				t.Fatal(err)
			}
		}
		if status, body, _ := postForm(t, http.DefaultClient, f.url+"/webhook/calm", fmt.Sprintf("event=E&token=%s&id=c%d", secretA, i), nil); status != 200 {
			t.Errorf("calm request %d while noisy is limited = %d %s; want 200", i, status, body)
		}
	}
	if ok != 3 || limited != 17 {
		t.Errorf("noisy: %d accepted, %d limited; want the burst of 3 accepted and 17 limited", ok, limited)
	}
}

// No answer, whatever the failure, carries a secret value (the admin
// API's answers: admin.TestNoSecretInErrors).
func TestNoSecretInErrors(t *testing.T) {
	f := newHardFixture(t, nil, nil, gateway.Deps{
		Checks: map[string]gateway.Check{
			"secrets": func(context.Context) error { return fmt.Errorf("vault said: bad token %s", secretA) },
		},
	})
	// the store has served the secret once (as after any accepted call)
	postForm(t, http.DefaultClient, f.url+"/webhook/a", "event=E&token="+secretA+"&id=1", nil)
	type req struct {
		name, method, path, ctype, body string
		hdr                             map[string]string
	}
	reqs := []req{
		{"wrong token", "POST", "/webhook/a", form, "event=E&token=" + secretA + "x", nil},
		{"malformed body", "POST", "/webhook/a", form, "%zz" + secretA, nil},
		{"media type", "POST", "/webhook/a", "text/plain", secretA, nil},
		{"unknown source", "POST", "/webhook/" + secretA, form, "event=E", nil},
		{"too large", "POST", "/webhook/a", form, "token=" + secretA + strings.Repeat("x", 4096), nil},
		{"header too large", "POST", "/webhook/a", form, "event=E", map[string]string{"X-Token": secretA, "X-Pad": strings.Repeat("p", 64<<10)}},
		{"readyz", "GET", "/readyz", "", "", nil},
	}
	f.secrets.SetDown(false)
	for _, r := range reqs {
		resp, err := doRetryingReset(func() *http.Request {
			hr, _ := http.NewRequest(r.method, f.url+r.path, strings.NewReader(r.body))
			if r.ctype != "" {
				hr.Header.Set("Content-Type", r.ctype)
			}
			for k, v := range r.hdr {
				hr.Header.Set(k, v)
			}
			return hr
		})
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: %d %s; want an error", r.name, resp.StatusCode, b)
		}
		var hdrs strings.Builder
		resp.Header.Write(&hdrs)
		if strings.Contains(string(b), secretA) || strings.Contains(hdrs.String(), secretA) {
			t.Errorf("%s: answer holds the secret: %d %s", r.name, resp.StatusCode, b)
		}
	}
	// with the store down, too
	f.secrets.SetDown(true)
	status, body, _ := postForm(t, http.DefaultClient, f.url+"/webhook/a", "event=E&token="+secretA+"&id=9", nil)
	if status != 503 || strings.Contains(body, secretA) {
		t.Errorf("store down: %d %s", status, body)
	}
}

// TestShutdownClosesSilentConnections: a graceful stop does not wait for a
// connection that has sent nothing (a load balancer's spare one) until
// read_timeout, nor answers it 408: it closes it after a short grace, and
// an idle keep-alive connection at once; a request half sent when the stop
// begins is still read and answered.
func TestShutdownClosesSilentConnections(t *testing.T) {
	const readTimeout = 30 * time.Second
	f := newHardFixture(t, func(s *config.Server) { s.ReadTimeout = config.Duration(readTimeout) }, nil, gateway.Deps{})
	silent, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	idle, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	body := "event=E&token=" + secretA + "&id=keepalive"
	fmt.Fprintf(idle, "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", form, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("keep-alive request: %d", resp.StatusCode)
	}

	// a request half sent when the stop begins is finished, not cut
	slow, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	body = "event=E&token=" + secretA + "&id=in-flight"
	fmt.Fprintf(slow, "POST /webhook/a HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", form, len(body), body[:10])
	slowStatus := make(chan int, 1)
	go func() {
		time.Sleep(3 * time.Second) // past the grace of silent connections
		io.WriteString(slow, body[10:])
		slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
		if err != nil {
			slowStatus <- 0
			return
		}
		resp.Body.Close()
		slowStatus <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), readTimeout-5*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.gw.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v after %v; want nil, without waiting for the silent connection", err, time.Since(start))
	}
	if st := <-slowStatus; st != 200 {
		t.Errorf("request in flight during the stop: status %d; want 200", st)
	}
	for name, c := range map[string]net.Conn{"silent": silent, "idle": idle} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 256)
		if n, err := c.Read(b); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("%s connection after Shutdown: read %q, %v; want it closed without an answer", name, b[:n], err)
		}
	}
}
