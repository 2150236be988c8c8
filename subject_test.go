package hookgate_test

import (
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
)

func TestSubjectToken(t *testing.T) {
	long := strings.Repeat("E", 4096)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "ONCRMDEALADD", "ONCRMDEALADD"},
		{"unsafe characters", "invoice.paid *>", "invoice_paid___"},
		{"empty", "", "_"},
		{"at the limit", strings.Repeat("a", hookgate.MaxSubjectToken), strings.Repeat("a", hookgate.MaxSubjectToken)},
	}
	for _, tc := range tests {
		if got := hookgate.SubjectToken(tc.in); got != tc.want {
			t.Errorf("SubjectToken(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
	a, b := hookgate.SubjectToken(long), hookgate.SubjectToken(long+"F")
	if len(a) != hookgate.MaxSubjectToken || len(b) != hookgate.MaxSubjectToken {
		t.Errorf("SubjectToken of 4 096 and 4 097 bytes has %d and %d bytes; want %d", len(a), len(b), hookgate.MaxSubjectToken)
	}
	if a == b {
		t.Errorf("two long names that differ after the cut share the token %q", a)
	}
	if !strings.HasPrefix(a, strings.Repeat("E", 111)+"_") {
		t.Errorf("SubjectToken(long) = %q; want the name's start, then '_' and a hash", a)
	}
	if s := hookgate.InboundSubject(strings.Repeat("s", 4100), long); len(s) > 12+2*hookgate.MaxSubjectToken+1 {
		t.Errorf("InboundSubject of long parts has %d bytes", len(s))
	}
}
