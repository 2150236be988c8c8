package history

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
)

// FuzzDecodeRow: decodeRow must do what json.Unmarshal does with any line:
// the same row, an error when it errs. The seeds are lines appendRow wrote,
// so mutations explore the layout the hand-written reader takes on.
func FuzzDecodeRow(f *testing.F) {
	rows := testRows(3, "src")
	rows[1].TS = rows[1].TS.In(time.FixedZone("x", 5*3600+30*60))
	rows[1].RequestBody = "caf\u00e9 \"q\" \\ \t\x01 \u2028 \xff <&>"
	rows[2].DurationMS = 1e-7
	data, err := encodeRows(rows)
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) > 0 {
			f.Add(line)
		}
	}
	f.Add([]byte(`{"ts":"2026-11-23T01:02:03Z","direction":1}`))                                          // keys missing
	f.Add([]byte(`{"TS":"2026-11-23T01:02:03Z"}`))                                                        // keys match any case
	f.Add([]byte(`{"ts":"2026-11-23T01:02:03Z","exchange_id":"\ud83d\ude00 \udc00","event_id":"` + "\n")) // surrogates, torn
	f.Fuzz(func(t *testing.T, line []byte) {
		var want hookgate.Exchange
		wantErr := json.Unmarshal(line, &want)
		var got hookgate.Exchange
		err := decodeRow(line, &got)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeRow(%q) error = %v; json.Unmarshal: %v", line, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeRow(%q) =\n%+v\njson.Unmarshal:\n%+v", line, got, want)
		}
	})
}

// TestDecodeRowFastPath: every line the spool writes is read by hand (the
// fuzz target above would pass if the fast path never took a line), and
// lines it does not take still read as encoding/json reads them.
func TestDecodeRowFastPath(t *testing.T) {
	rows := testRows(50, "src")
	rows[3].RequestBody = strings.Repeat("é\"\\\n\x00\u2028😀", 100)
	rows[4].DurationMS = 3e21
	rows[5].TS = rows[5].TS.In(time.FixedZone("x", -(9*3600 + 30*60)))
	rows[6].Status, rows[6].Attempt, rows[6].Direction = math.MaxUint16, math.MaxUint16, math.MaxUint8
	rows[7].DurationMS = -0.000001
	data, err := encodeRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, row := range rows {
		var x hookgate.Exchange
		if !decodeRowFast(lines[i], &x) {
			t.Fatalf("row %d not read by the fast path: %s", i, lines[i])
		}
		var want hookgate.Exchange
		if err := json.Unmarshal(lines[i], &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x, want) {
			t.Fatalf("row %d: fast path read\n%+v\nencoding/json\n%+v", i, x, want)
		}
		if !x.TS.Equal(row.TS) || x.RequestBody != row.RequestBody || x.Status != row.Status {
			t.Fatalf("row %d does not round-trip: %+v, wrote %+v", i, x, row)
		}
	}

	// not the spool's layout: encoding/json decides
	for _, tc := range []struct {
		line    string
		wantErr bool
	}{
		{`{"ts":"2026-11-23T01:02:03Z", "source":"a"}`, false},             // white space
		{`{"source":"a","ts":"2026-11-23T01:02:03Z"}`, false},              // order
		{`{"ts":"2026-11-23T01:02:03Z","status":70000}`, true},             // overflow
		{`{"ts":"2026-11-23T01:02:03Z","source":"\ud800"}`, false},         // lone surrogate
		{`{"ts":"2026-11-23T01:02:03Z","source":"` + "\xff" + `"}`, false}, // invalid UTF-8
		{`{"ts":"not a time"}`, true},
		{`{"ts":"2026-11-23T01:02:03Z"`, true}, // torn
		{``, true},
	} {
		var got, want hookgate.Exchange
		err := decodeRow([]byte(tc.line), &got)
		wantErr := json.Unmarshal([]byte(tc.line), &want)
		if (err != nil) != tc.wantErr || (wantErr != nil) != tc.wantErr {
			t.Errorf("decodeRow(%s) error = %v, encoding/json %v; want error %v", tc.line, err, wantErr, tc.wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("decodeRow(%s) = %+v; encoding/json %+v", tc.line, got, want)
		}
	}
}

// BenchmarkDecodeRow reads spool lines of 1 KiB bodies by hand and with
// encoding/json, in the same run.
func BenchmarkDecodeRow(b *testing.B) {
	rows := testRows(1000, "bench")
	body := strings.Repeat("data%5BFIELDS%5D%5BID%5D=1&", 40)
	for i := range rows {
		rows[i].RequestBody = body
	}
	data, err := encodeRows(rows)
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))[:len(rows)]
	for _, bc := range []struct {
		name   string
		decode func([]byte, *hookgate.Exchange) error
	}{
		{"decodeRow", decodeRow},
		{"encoding_json", func(line []byte, x *hookgate.Exchange) error { return json.Unmarshal(line, x) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data) / len(rows)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var x hookgate.Exchange
				if err := bc.decode(lines[i%len(lines)], &x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
