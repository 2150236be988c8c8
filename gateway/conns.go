package gateway

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// freshGrace is how long a connection may stay silent after it was
// accepted before a graceful stop closes it (net/http waits 5 s; a
// client that connects to send a webhook sends it at once).
const freshGrace = 2 * time.Second

// fresh tracks the connections Serve accepted that have not sent a byte
// yet. fasthttp counts a new connection as active before it reads
// anything, so a graceful stop would wait for a silent one (a load
// balancer's or a client pool's spare connection) until read_timeout and
// then answer it 408; Shutdown closes them instead.
type fresh struct {
	mu    sync.Mutex
	conns map[*freshConn]time.Time // accepted at
}

// listener wraps ln so that its connections are tracked until they
// deliver their first byte.
func (f *fresh) listener(ln net.Listener) net.Listener { return freshListener{ln, f} }

// closeSilent closes the tracked connections accepted at least grace
// before now.
func (f *fresh) closeSilent(now time.Time, grace time.Duration) {
	f.mu.Lock()
	var silent []*freshConn
	for c, at := range f.conns {
		if now.Sub(at) >= grace {
			silent = append(silent, c)
			delete(f.conns, c)
		}
	}
	f.mu.Unlock()
	for _, c := range silent {
		c.Conn.Close()
	}
}

// closeSilentUntil closes silent connections every 100 ms until stop is
// closed.
func (f *fresh) closeSilentUntil(stop <-chan struct{}, grace time.Duration) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		f.closeSilent(time.Now(), grace)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (f *fresh) add(c *freshConn) {
	f.mu.Lock()
	if f.conns == nil {
		f.conns = map[*freshConn]time.Time{}
	}
	f.conns[c] = time.Now()
	f.mu.Unlock()
}

func (f *fresh) forget(c *freshConn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

type freshListener struct {
	net.Listener
	f *fresh
}

func (l freshListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &freshConn{Conn: c, f: l.f}
	l.f.add(fc)
	return fc, nil
}

// freshConn is a connection that leaves the tracking at its first byte.
// It also keeps the request line of the request being read (see
// requestLine).
type freshConn struct {
	net.Conn
	f    *fresh
	used atomic.Bool

	// line is the start of the bytes read since the last answer, up to
	// the first line feed or requestLineMax bytes; lineDone once either
	// was reached. Only the serving goroutine reads and writes them.
	line     []byte
	lineDone bool
}

// requestLineMax bounds the request line a connection keeps.
const requestLineMax = 1024

func (c *freshConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
		c.f.forget(c)
	}
	if n > 0 && !c.lineDone {
		c.keepLine(p[:n])
	}
	return n, err
}

func (c *freshConn) keepLine(p []byte) {
	if len(c.line) == 0 {
		p = bytes.TrimLeft(p, "\r\n") // empty lines may precede a request
	}
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		p, c.lineDone = p[:i], true
	}
	if room := requestLineMax - len(c.line); len(p) >= room {
		p, c.lineDone = p[:room], true
	}
	c.line = append(c.line, p...)
}

// Write starts a new request line after an answer (not after an interim
// 1xx answer such as 100 Continue, which the same request's body follows).
func (c *freshConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 1")) {
		c.line, c.lineDone = c.line[:0], false
	}
	return c.Conn.Write(p)
}

// requestLine returns the method and the target of the request being
// read, as far as they arrived, for the answers fasthttp gives after it
// dropped the request (408 while reading it, 431 for a header over the
// read buffer). A pipelining client's later requests may be attributed to
// an earlier one's line.
func (c *freshConn) requestLine() (method, target string, ok bool) {
	line := bytes.TrimSuffix(c.line, []byte("\r"))
	m, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(m) == 0 || len(rest) == 0 {
		return "", "", false
	}
	t, _, _ := bytes.Cut(rest, []byte(" "))
	return string(m), string(t), true
}

func (c *freshConn) Close() error {
	c.f.forget(c)
	return c.Conn.Close()
}
