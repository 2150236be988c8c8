package console

import (
	"fmt"
	"testing"
)

// Someone guessing the token from one address is held to its own budget;
// the operator's login from another address still goes through. Many
// addresses together meet the shared ceiling, and the table of addresses
// stays bounded.
func TestLoginLimiterPerAddress(t *testing.T) {
	l := newLoginLimiter(loginPerAddr, loginPerAddrBurst, loginAll, loginAllBurst)
	allowed := 0
	for range 50 {
		if l.Allow("203.0.113.9") {
			allowed++
		}
	}
	if allowed < loginPerAddrBurst || allowed > loginPerAddrBurst+2 {
		t.Errorf("one address: %d of 50 quick tries allowed, want about its burst of %d", allowed, loginPerAddrBurst)
	}
	if !l.Allow("198.51.100.7") {
		t.Error("another address was refused while the first one was guessing")
	}

	l = newLoginLimiter(loginPerAddr, loginPerAddrBurst, loginAll, loginAllBurst)
	l.maxAddrs = 16
	allowed = 0
	for i := range 200 {
		if l.Allow(fmt.Sprintf("192.0.2.%d", i)) {
			allowed++
		}
		if len(l.per) > l.maxAddrs {
			t.Fatalf("%d addresses remembered, want at most %d", len(l.per), l.maxAddrs)
		}
	}
	if allowed < loginAllBurst || allowed > loginAllBurst+5 {
		t.Errorf("200 addresses: %d quick tries allowed, want about the shared burst of %d", allowed, loginAllBurst)
	}
}
