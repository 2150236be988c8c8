package gateway

import (
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
type freshConn struct {
	net.Conn
	f    *fresh
	used atomic.Bool
}

func (c *freshConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
		c.f.forget(c)
	}
	return n, err
}

func (c *freshConn) Close() error {
	c.f.forget(c)
	return c.Conn.Close()
}
