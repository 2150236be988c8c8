package outbound

import "time"

// noteQueryLimit empties the client's bucket after QUERY_LIMIT_EXCEEDED:
// the portal's bucket is fuller than ours thinks (another client of the
// portal, or this process restarted and its bucket started full), so the
// next requests leave at the drain rate instead of in a burst that the
// portal would refuse too.
func (b *Bitrix24) noteQueryLimit(err error) {
	if !isCode(err, CodeQueryLimitExceeded) || b.drain <= 0 {
		return
	}
	now := time.Now()
	if n := int(b.limiter.TokensAt(now)); n > 0 {
		b.limiter.ReserveN(now, n)
		b.opts.logger.Warn("bitrix24 QUERY_LIMIT_EXCEEDED: client bucket emptied", "portal", b.portal)
	}
}

// tokenWait is how long until the bucket holds a token for one request,
// without taking it.
func (b *Bitrix24) tokenWait() time.Duration {
	now := time.Now()
	r := b.limiter.ReserveN(now, b.unit)
	if !r.OK() {
		return 0
	}
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d
}
