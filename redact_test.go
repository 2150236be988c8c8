package hookgate

import (
	"fmt"
	"sync"
	"testing"
)

func TestRedactor(t *testing.T) {
	// Few values are looked for one by one; many go through one Replacer
	// pass. Both must redact alike.
	t.Run("scan", func(t *testing.T) { testRedactor(t, 0) })
	t.Run("replacer", func(t *testing.T) { testRedactor(t, maxScanForms+1) })
}

func testRedactor(t *testing.T, fillers int) {
	r := NewRedactor()
	for i := range fillers {
		r.Add(fmt.Sprintf("filler-secret-%03d", i))
	}
	r.Add("s3cr3t value/+&\"x", "abc", "plainsecret", "plainsecretlonger")
	if got := r.snap.Load().replacer != nil; got != (fillers > 0) {
		t.Fatalf("%d fillers: replacer in use = %v", fillers, got)
	}
	tests := []struct {
		name, in, want string
	}{
		{"plain", "token=plainsecret end", "token=[redacted] end"},
		{"longer value wins", "plainsecretlonger", "[redacted]"},
		{"query escaped", "q=s3cr3t+value%2F%2B%26%22x&a=1", "q=[redacted]&a=1"},
		{"path escaped", "/rest/1/s3cr3t%20value%2F+&%22x/m.json", "/rest/1/[redacted]/m.json"},
		{"json", `{"t":"s3cr3t value/+\u0026\"x"}`, `{"t":"[redacted]"}`},
		{"json no html escape", `{"t":"s3cr3t value/+&\"x"}`, `{"t":"[redacted]"}`},
		{"short values kept", "abc", "abc"},
		{"nothing known", "hello", "hello"},
		{"two values, twice", "plainsecret&plainsecretlonger/plainsecret", "[redacted]&[redacted]/[redacted]"},
	}
	for _, tc := range tests {
		if got := r.Redact(tc.in); got != tc.want {
			t.Errorf("redact(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
	before := r.snap.Load()
	r.Add("plainsecret")
	if r.snap.Load() != before {
		t.Errorf("adding a known value rebuilt the replacer")
	}
}

func TestRedactConcurrent(t *testing.T) {
	r := NewRedactor()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 50 {
				r.Add(fmt.Sprintf("secret-%d-%d", i, j))
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				_ = r.Redact("x secret-1-1 y")
			}
		}()
	}
	wg.Wait()
	if got := r.Redact("x secret-7-49 y secret-0-0"); got != "x [redacted] y [redacted]" {
		t.Errorf("redact = %q", got)
	}
}

func TestRedactorNil(t *testing.T) {
	var r *Redactor
	if got := r.Redact("x"); got != "x" {
		t.Errorf("nil Redactor.Redact(x) = %q", got)
	}
}
