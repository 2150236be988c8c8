package console

import (
	"sync"

	"golang.org/x/time/rate"
)

// Login tries are limited per client address (the peer, or the address
// server.trusted_proxies vouch for) and, as a ceiling, for everyone
// together: someone guessing the token from one address is slowed to a
// try a second without holding up the operator's own login from another.
const (
	loginPerAddr      rate.Limit = 1 // tries a second from one address
	loginPerAddrBurst            = 5
	loginAll          rate.Limit = 20 // tries a second from all addresses
	loginAllBurst                = 40
	// maxLoginAddrs bounds the addresses remembered; past it the table
	// starts afresh (the ceiling still holds).
	maxLoginAddrs = 4096
)

type loginLimiter struct {
	mu       sync.Mutex
	all      *rate.Limiter
	per      map[string]*rate.Limiter
	perRate  rate.Limit
	perBurst int
	maxAddrs int
}

func newLoginLimiter(perRate rate.Limit, perBurst int, all rate.Limit, allBurst int) *loginLimiter {
	return &loginLimiter{
		all: rate.NewLimiter(all, allBurst), per: map[string]*rate.Limiter{},
		perRate: perRate, perBurst: perBurst, maxAddrs: maxLoginAddrs,
	}
}

// Allow reports whether a login try from addr may go on now.
func (l *loginLimiter) Allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.per[addr]
	if lim == nil {
		if len(l.per) >= l.maxAddrs {
			clear(l.per)
		}
		lim = rate.NewLimiter(l.perRate, l.perBurst)
		l.per[addr] = lim
	}
	// the address's own budget first: a refused try does not spend the
	// shared one
	return lim.Allow() && l.all.Allow()
}
