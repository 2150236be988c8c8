package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Safe writes (issue 18). Bitrix24 has no idempotency key: a write whose
// answer was lost may or may not have run. The client therefore tells
// reads from writes. Reads retry on any transient failure. Writes retry
// only when the portal certainly did not run them (see certainlyNotRun);
// after an ambiguous failure (a timeout or a reset once the request was
// sent) they retry only with an idempotency check, and otherwise fail
// with an *AmbiguousWriteError, which is permanent: the durable job is
// dead-lettered instead of creating a duplicate.

// CodeAmbiguousWrite is the history and dead-letter error code of a write
// that may have run in Bitrix24 although its answer was lost.
const CodeAmbiguousWrite = "ambiguous_write"

// ErrAmbiguousWrite is matched (errors.Is) by every *AmbiguousWriteError.
var ErrAmbiguousWrite = errors.New("outbound: " + CodeAmbiguousWrite)

// AmbiguousWriteError is a write whose request was sent but whose answer
// was lost: it may have run in the portal. It is not transient.
type AmbiguousWriteError struct {
	Method string
	Cause  error
}

func (e *AmbiguousWriteError) Error() string {
	return fmt.Sprintf("%s: %s may have run in Bitrix24 (%v); check the portal for the entity before replaying "+
		"(a replay runs the write again); for crm.*.add, set fields ORIGINATOR_ID and ORIGIN_ID so that hookgate "+
		"can look the entity up itself", CodeAmbiguousWrite, e.Method, e.Cause)
}

func (e *AmbiguousWriteError) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrAmbiguousWrite) true.
func (e *AmbiguousWriteError) Is(target error) bool { return target == ErrAmbiguousWrite }

// readVerbs are the last segments of methods that change nothing.
var readVerbs = map[string]bool{
	"get": true, "list": true, "fields": true, "search": true, "count": true,
	"info": true, "current": true, "userfields": true, "status": true, "items": true,
	"profile": true, "scope": true, "methods": true, "events": true, "access": true,
}

// IsWrite reports whether method may change data in the portal. A method
// is a read when its last segment is a read verb (crm.deal.get,
// crm.deal.list, crm.deal.fields, user.current, …) or it ends in ".get"
// under another name (crm.deal.contact.items.get); everything else,
// batch included, counts as a write.
func IsWrite(method string) bool {
	m := strings.ToLower(method)
	if i := strings.LastIndexByte(m, '.'); i >= 0 {
		m = m[i+1:]
	}
	return !readVerbs[m]
}

type writeKey int

const (
	idempotentKey writeKey = iota
	batchReadKey
)

// WithIdempotent returns ctx marking the calls made with it as safe to
// repeat: a route that declares `call.idempotent: true` (an update that
// sets absolute values, say) lets the client retry its writes after an
// ambiguous failure.
func WithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey, true)
}

func idempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey).(bool)
	return v
}

// batchReads returns ctx saying whether every command of a batch is a read.
func batchReads(ctx context.Context, cmds []BatchCmd) context.Context {
	for _, c := range cmds {
		if IsWrite(c.Method) {
			return ctx
		}
	}
	return context.WithValue(ctx, batchReadKey, true)
}

// isWriteCall reports whether the call of method with ctx is a write.
func isWriteCall(ctx context.Context, method string) bool {
	if method == "batch" {
		v, _ := ctx.Value(batchReadKey).(bool)
		return !v
	}
	return IsWrite(method)
}

// certainlyNotRun reports whether a failed attempt certainly did not run
// in the portal: it was never sent (secret, hold, bucket, open breaker),
// the connection was refused, or the portal answered with an error code
// of its own. A timeout, a reset, an answer without a code (a proxy's
// 502) or an unreadable answer are ambiguous.
func certainlyNotRun(a attemptResult) bool {
	if !a.sent || errors.Is(a.err, ErrCircuitOpen) {
		return true
	}
	var ae *APIError
	if errors.As(a.err, &ae) {
		return ae.Code != "" && ae.Code != CodeUnexpectedAnswer
	}
	return errors.Is(a.err, syscall.ECONNREFUSED)
}

// originCheck is the idempotency check of a crm.<entity>.add: the
// ORIGINATOR_ID and ORIGIN_ID it sets.
type originCheck struct {
	list       string // crm.<entity>.list
	originator string
	origin     string
}

// addCheck returns the idempotency check of a call, or nil: method is
// crm.<entity>.add and its fields carry both ORIGINATOR_ID and ORIGIN_ID,
// non-empty.
func addCheck(method string, params map[string]any) *originCheck {
	parts := strings.Split(strings.ToLower(method), ".")
	if len(parts) < 3 || parts[0] != "crm" || parts[len(parts)-1] != "add" {
		return nil
	}
	var fields map[string]any
	for k, v := range params {
		if strings.EqualFold(k, "fields") {
			fields, _ = v.(map[string]any)
		}
	}
	c := &originCheck{list: strings.Join(parts[:len(parts)-1], ".") + ".list"}
	for k, v := range fields {
		s := strings.TrimSpace(fmt.Sprint(v))
		switch strings.ToUpper(k) {
		case "ORIGINATOR_ID":
			c.originator = s
		case "ORIGIN_ID":
			c.origin = s
		}
	}
	if c.originator == "" || c.origin == "" {
		return nil
	}
	return c
}

// lookup finds the entity the check names: its ID as the result of an add
// (a JSON number), or nil when there is none.
func (b *Bitrix24) lookup(ctx context.Context, c *originCheck) (*Result, error) {
	params := map[string]any{
		"filter": map[string]any{"=ORIGINATOR_ID": c.originator, "=ORIGIN_ID": c.origin},
		"select": []any{"ID"},
		"order":  map[string]any{"ID": "ASC"},
	}
	body, err := EncodeParams(params)
	if err != nil {
		return nil, err
	}
	res, err := b.call(WithIdempotent(ctx), c.list, body)
	if err != nil {
		return nil, fmt.Errorf("idempotency check %s: %w", c.list, err)
	}
	var rows []struct {
		ID json.RawMessage `json:"ID"`
	}
	if err := json.Unmarshal(res.Result, &rows); err != nil {
		return nil, fmt.Errorf("idempotency check %s: %w", c.list, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	var id string
	if err := json.Unmarshal(rows[0].ID, &id); err != nil {
		id = string(rows[0].ID)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("idempotency check %s: bad ID %q", c.list, id)
	}
	if len(rows) > 1 {
		b.opts.logger.Warn("idempotency check found more than one entity; using the first",
			"portal", b.portal, "method", c.list, "originator_id", c.originator, "origin_id", c.origin, "found", len(rows))
	}
	return &Result{Result: json.RawMessage(strconv.FormatInt(n, 10)), Time: res.Time, Attempts: res.Attempts}, nil
}

// checkedAdd runs an add with an idempotency check: a durable retry (the
// job's attempt > 1) looks the entity up before sending, since an earlier
// attempt may have created it; an ambiguous failure looks it up before
// re-sending. A hit is the result.
func (b *Bitrix24) checkedAdd(ctx context.Context, method, body string, c *originCheck) (*Result, error) {
	if firstAttempt(ctx) > 1 {
		res, err := b.lookup(ctx, c)
		if err != nil || res != nil {
			return res, err
		}
	}
	for i := 0; ; i++ {
		res, err := b.call(ctx, method, body)
		var amb *AmbiguousWriteError
		if !errors.As(err, &amb) {
			return res, err
		}
		b.opts.logger.Info("bitrix24 write ambiguous: looking the entity up", "portal", b.portal, "method", method,
			"originator_id", c.originator, "origin_id", c.origin)
		found, lerr := b.lookup(ctx, c)
		if lerr != nil {
			// Not known either way: a durable retry looks again first.
			return nil, fmt.Errorf("call %s: answer lost (%v), and %w", method, amb.Cause, lerr)
		}
		if found != nil {
			return found, nil
		}
		if i >= b.retries {
			// Not committed: safe for the durable job to send again.
			return nil, fmt.Errorf("call %s: answer lost and no entity with ORIGINATOR_ID %q, ORIGIN_ID %q: %w",
				method, c.originator, c.origin, amb.Cause)
		}
	}
}
