package hookgate_test

import (
	"testing"

	"github.com/hookgate/hookgate"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "hello", 10, "hello"},
		{"exact", "hello", 5, "hello"},
		{"no limit", "hello", 0, "hello"},
		{"cut", "hello world", 5, "hello…[truncated 6 bytes]"},
		{"utf8 boundary", "aжb", 2, "a…[truncated 3 bytes]"},
	}
	for _, tc := range tests {
		if got := hookgate.Truncate(tc.in, tc.max); got != tc.want {
			t.Errorf("Truncate(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseDirection(t *testing.T) {
	for in, want := range map[string]hookgate.Direction{"inbound": hookgate.Inbound, "1": hookgate.Inbound, "outbound": hookgate.Outbound, "2": hookgate.Outbound, "sideways": 0} {
		if got := hookgate.ParseDirection(in); got != want {
			t.Errorf("ParseDirection(%q) = %v; want %v", in, got, want)
		}
	}
}
