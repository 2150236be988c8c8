package outbound

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

func TestIsWrite(t *testing.T) {
	for _, tc := range []struct {
		method string
		want   bool
	}{
		{"crm.deal.get", false},
		{"crm.deal.list", false},
		{"crm.deal.fields", false},
		{"CRM.DEAL.LIST", false},
		{"crm.deal.contact.items.get", false},
		{"user.current", false},
		{"crm.deal.add", true},
		{"crm.deal.update", true},
		{"crm.deal.delete", true},
		{"crm.deal.contact.items.set", true},
		{"batch", true},
		{"tasks.task.complete", true},
	} {
		if got := IsWrite(tc.method); got != tc.want {
			t.Errorf("IsWrite(%s) = %v; want %v", tc.method, got, tc.want)
		}
	}
}

// commitTimeout is a simulator whose next call of method commits and
// never answers, and a client that gives up on an attempt after 150 ms.
func commitTimeout(t *testing.T, method string, opts ...Option) (*bitrix24test.Server, *Bitrix24, *recorder) {
	t.Helper()
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.InjectFault(bitrix24test.Fault{Method: method, AfterCommit: true, Latency: 5 * time.Second})
	rec := &recorder{}
	c := setup(t, sim, config.Portal{Timeout: config.Duration(150 * time.Millisecond)},
		append([]Option{WithRecorder(rec), WithClock(newFakeClock())}, opts...)...)
	return sim, c, rec
}

func addParams(origin bool) map[string]any {
	fields := map[string]any{"TITLE": "Platform deal 77"}
	if origin {
		fields["ORIGINATOR_ID"] = "platform"
		fields["ORIGIN_ID"] = "77"
	}
	return map[string]any{"fields": fields}
}

// TestAmbiguousAddChecked: an add that commits and times out is looked up
// by ORIGINATOR_ID/ORIGIN_ID and not sent again: one deal, its id is the
// result.
func TestAmbiguousAddChecked(t *testing.T) {
	sim, c, rec := commitTimeout(t, "crm.deal.add")
	res, err := c.Call(context.Background(), "crm.deal.add", addParams(true))
	if err != nil {
		t.Fatalf("checked add: %v", err)
	}
	if string(res.Result) != "1" || sim.Count("deal") != 1 {
		t.Errorf("result %s, %d deals; want 1 and one deal", res.Result, sim.Count("deal"))
	}
	if sim.Requests("crm.deal.add") != 1 || sim.Requests("crm.deal.list") != 1 {
		t.Errorf("requests: %d add, %d list; want 1 and 1", sim.Requests("crm.deal.add"), sim.Requests("crm.deal.list"))
	}
	rows := rec.all()
	if len(rows) != 2 || rows[0].Error != CodeAmbiguousWrite || rows[1].Operation != "crm.deal.list" {
		t.Errorf("rows = %+v; want the ambiguous add, then the list", rows)
	}
}

// TestAmbiguousAddCheckedMiss: when the lookup finds nothing the add did
// not commit, and it is sent again.
func TestAmbiguousAddCheckedMiss(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	// a 502 without a code: ambiguous, though nothing committed
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", Status: 502, Description: "Bad Gateway"})
	c := setup(t, sim, config.Portal{}, WithClock(newFakeClock()))
	res, err := c.Call(context.Background(), "crm.deal.add", addParams(true))
	if err != nil || string(res.Result) != "1" {
		t.Fatalf("checked add after a 502: %v, %v", res, err)
	}
	if sim.Count("deal") != 1 || sim.Requests("crm.deal.add") != 2 || sim.Requests("crm.deal.list") != 1 {
		t.Errorf("%d deals, %d adds, %d lists; want 1, 2, 1", sim.Count("deal"), sim.Requests("crm.deal.add"), sim.Requests("crm.deal.list"))
	}
}

// TestAmbiguousAddUnchecked: without the check the add is not repeated; the
// error is ambiguous_write, permanent, and says what to do.
func TestAmbiguousAddUnchecked(t *testing.T) {
	sim, c, rec := commitTimeout(t, "crm.deal.add")
	_, err := c.Call(context.Background(), "crm.deal.add", addParams(false))
	if !errors.Is(err, ErrAmbiguousWrite) || IsTransient(err) {
		t.Fatalf("unchecked add: %v; want a permanent ambiguous_write", err)
	}
	var ae *AmbiguousWriteError
	if !errors.As(err, &ae) || ae.Method != "crm.deal.add" {
		t.Errorf("error %v is not an *AmbiguousWriteError for crm.deal.add", err)
	}
	if sim.Count("deal") != 1 || sim.Requests("crm.deal.add") != 1 || sim.Requests("crm.deal.list") != 0 {
		t.Errorf("%d deals, %d adds, %d lists; want 1, 1, 0", sim.Count("deal"), sim.Requests("crm.deal.add"), sim.Requests("crm.deal.list"))
	}
	if rows := rec.all(); len(rows) != 1 || rows[0].Error != CodeAmbiguousWrite || rows[0].Outcome != "failed" {
		t.Errorf("rows = %+v; want one failed ambiguous_write", rows)
	}
	if got := errorCode(err); got != CodeAmbiguousWrite {
		t.Errorf("errorCode = %q; want %q", got, CodeAmbiguousWrite)
	}
}

// TestWriteRetriedWhenCertain: answers that say the portal did not run the
// write (rate limit, an error code) are retried, a write goes through once.
func TestWriteRetriedWhenCertain(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", Status: 503, Code: CodeQueryLimitExceeded, Description: "Too many requests"})
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", Status: 500, Code: CodeInternalServerError, Description: "boom"})
	c := setup(t, sim, config.Portal{}, WithClock(newFakeClock()))
	if _, err := c.Call(context.Background(), "crm.deal.add", addParams(false)); err != nil {
		t.Fatalf("add after QUERY_LIMIT_EXCEEDED and INTERNAL_SERVER_ERROR: %v", err)
	}
	if sim.Count("deal") != 1 || sim.Requests("crm.deal.add") != 3 {
		t.Errorf("%d deals, %d adds; want 1, 3", sim.Count("deal"), sim.Requests("crm.deal.add"))
	}
}

// TestWriteRetriedWhenRefused: a refused connection never reached the
// portal; the write is transient, not ambiguous.
func TestWriteRetriedWhenRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewBitrix24(config.Portal{ID: "gone", BaseURL: "http://" + addr, UserID: 1, Rate: unlimited},
		staticSecret("s"), WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(context.Background(), "crm.deal.add", addParams(false))
	if err == nil || errors.Is(err, ErrAmbiguousWrite) || !IsTransient(err) {
		t.Errorf("add to a closed port: %v; want a transient error, not ambiguous", err)
	}
}

// TestReadRetriedAfterTimeout: a read is repeated after a lost answer.
func TestReadRetriedAfterTimeout(t *testing.T) {
	sim, c, _ := commitTimeout(t, "crm.deal.get")
	sim.SeedDeals(1)
	if _, err := c.Call(context.Background(), "crm.deal.get", map[string]any{"id": 1}); err != nil {
		t.Fatalf("get after a timeout: %v", err)
	}
	if sim.Requests("crm.deal.get") != 2 {
		t.Errorf("%d gets; want 2", sim.Requests("crm.deal.get"))
	}
}

// TestIdempotentWriteRetried: a route that declares its write idempotent
// gets in-call retries after a timeout.
func TestIdempotentWriteRetried(t *testing.T) {
	sim, c, _ := commitTimeout(t, "crm.deal.update")
	sim.SeedDeals(1)
	ctx := WithIdempotent(context.Background())
	if _, err := c.Call(ctx, "crm.deal.update", map[string]any{"id": 1, "fields": map[string]any{"TITLE": "x"}}); err != nil {
		t.Fatalf("idempotent update after a timeout: %v", err)
	}
	if sim.Requests("crm.deal.update") != 2 {
		t.Errorf("%d updates; want 2", sim.Requests("crm.deal.update"))
	}
	// the same update without the declaration is ambiguous
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.update", AfterCommit: true, Latency: 5 * time.Second})
	_, err := c.Call(context.Background(), "crm.deal.update", map[string]any{"id": 1, "fields": map[string]any{"TITLE": "y"}})
	if !errors.Is(err, ErrAmbiguousWrite) {
		t.Errorf("update after a timeout: %v; want ambiguous_write", err)
	}
}

// TestDurableRetryLooksUpFirst: a job's later attempt of a checked add
// finds the deal an earlier attempt created and sends no add.
func TestDurableRetryLooksUpFirst(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	c := setup(t, sim, config.Portal{}, WithClock(newFakeClock()))
	if _, err := c.Call(context.Background(), "crm.deal.add", addParams(true)); err != nil {
		t.Fatal(err)
	}
	res, err := c.Call(WithAttempt(context.Background(), 2), "crm.deal.add", addParams(true))
	if err != nil || string(res.Result) != "1" {
		t.Fatalf("second attempt: %v, %v; want the first deal's id", res, err)
	}
	if sim.Count("deal") != 1 || sim.Requests("crm.deal.add") != 1 {
		t.Errorf("%d deals, %d adds; want 1, 1", sim.Count("deal"), sim.Requests("crm.deal.add"))
	}
	// a first attempt does not look up: a second platform deal with
	// another ORIGIN_ID is added
	p := addParams(true)
	p["fields"].(map[string]any)["ORIGIN_ID"] = "78"
	if _, err := c.Call(context.Background(), "crm.deal.add", p); err != nil || sim.Count("deal") != 2 {
		t.Errorf("another origin: %v, %d deals; want 2", err, sim.Count("deal"))
	}
}

// TestCheckedAddWithoutRetries: with no in-call retries a checked add
// still looks the entity up after a lost answer; a miss is a transient
// error (the durable job may send it again), not ambiguous_write.
func TestCheckedAddWithoutRetries(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithRate(0, 0))
	sim.InjectFault(bitrix24test.Fault{Method: "crm.deal.add", Status: 502, Description: "Bad Gateway"})
	c := setup(t, sim, config.Portal{}, WithClock(newFakeClock()), WithRetries(0))
	_, err := c.Call(context.Background(), "crm.deal.add", addParams(true))
	if err == nil || errors.Is(err, ErrAmbiguousWrite) || !IsTransient(err) {
		t.Fatalf("checked add, 502, no retries: %v; want a transient error", err)
	}
	if sim.Count("deal") != 0 || sim.Requests("crm.deal.list") != 1 {
		t.Errorf("%d deals, %d lists; want 0 and 1", sim.Count("deal"), sim.Requests("crm.deal.list"))
	}
	// committed, then lost: found with no retries
	sim2, c2, _ := commitTimeout(t, "crm.deal.add", WithRetries(0))
	if res, err := c2.Call(context.Background(), "crm.deal.add", addParams(true)); err != nil || string(res.Result) != "1" || sim2.Count("deal") != 1 {
		t.Errorf("checked add after commit-and-timeout, no retries: %v, %v, %d deals", res, err, sim2.Count("deal"))
	}
}
