package history

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hookgate/hookgate"
)

// FuzzDecodeRow: on any line, the hand-written reader either gives up or
// reads what decodeRowStd (encoding/json) reads. The seeds are lines
// AppendJSONEachRow wrote, so mutations explore the layout the fast path
// takes on.
func FuzzDecodeRow(f *testing.F) {
	rows := testRows(3, "src")
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
	f.Add([]byte(`{"ts":"2026-11-23T01:02:03Z","direction":1}`))                                             // an earlier spool's line
	f.Add([]byte(`{"ts":"2026-02-30 01:02:03.000","direction":"inbound"}`))                                  // no such day
	f.Add([]byte(`{"ts":"2026-11-23 01:02:03.000","exchange_id":"\ud83d\ude00 \udc00","event_id":"` + "\n")) // surrogates, torn
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast hookgate.Exchange
		if !decodeRowFast(line, &fast) {
			return
		}
		var std hookgate.Exchange
		if err := decodeRowStd(line, &std); err != nil {
			t.Fatalf("decodeRowFast read %q; decodeRowStd: %v", line, err)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("decodeRowFast(%q) =\n%+v\ndecodeRowStd:\n%+v", line, fast, std)
		}
	})
}

// FuzzEncodeRows: every row AppendJSONEachRow writes is one valid JSON
// line that both readers take back, as it was but for ts (UTC,
// milliseconds) and invalid UTF-8 (U+FFFD).
func FuzzEncodeRows(f *testing.F) {
	f.Add("src", "body <&> \"q\" \\ \n\x00 caf\u00e9 \xff \u2028", int64(1763856000123456789), uint32(0x3f9d70a4), uint16(200), uint8(1), int16(0))
	f.Add("", "", int64(0), uint32(0x358637bd), uint16(0), uint8(2), int16(330))                            // 1e-6 region
	f.Add("x", "y", int64(-62135596800000000000/1000), uint32(0x7f800000), uint16(1), uint8(1), int16(-60)) // +Inf: an error
	f.Add("x", "y", int64(253402300800000000), uint32(0x60ad78ec), uint16(1), uint8(1), int16(1440))        // year 10000: an error
	f.Fuzz(func(t *testing.T, s1, s2 string, nanos int64, fbits uint32, status uint16, dir uint8, zoneMin int16) {
		x := hookgate.Exchange{
			TS:         time.Unix(0, nanos).In(time.FixedZone("z", int(zoneMin)*60)),
			ExchangeID: s1, EventID: s2, Direction: hookgate.Direction(dir), Source: s1, Provider: s2,
			Event: s1 + s2, Operation: s2, HTTPMethod: s1, URL: s2, Status: status, Outcome: s1,
			Error: s2, Attempt: status / 7, DurationMS: math.Float32frombits(fbits),
			RequestHeaders: s1, RequestBody: s2, ResponseBody: s1, RemoteAddr: s2,
		}
		d := float64(x.DurationMS)
		y := x.TS.UTC().Year()
		representable := y >= 0 && y <= 9999 && !math.IsNaN(d) && !math.IsInf(d, 0) &&
			(x.Direction == hookgate.Inbound || x.Direction == hookgate.Outbound)
		line, err := AppendJSONEachRow(nil, &x)
		if (err == nil) != representable {
			t.Fatalf("AppendJSONEachRow(%+v) error = %v", x, err)
		}
		if err != nil {
			return
		}
		if !json.Valid(line) || bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("AppendJSONEachRow wrote %q; want one JSON object and a newline", line)
		}
		var fast, std hookgate.Exchange
		if !decodeRowFast(line, &fast) {
			t.Fatalf("decodeRowFast did not take %s", line)
		}
		if err := decodeRowStd(line, &std); err != nil || !reflect.DeepEqual(fast, std) {
			t.Fatalf("decodeRowFast read\n%+v\ndecodeRowStd (%v)\n%+v", fast, err, std)
		}
		want := x
		u := x.TS.UTC() // to the millisecond: the layout cuts the other digits
		want.TS = time.Date(u.Year(), u.Month(), u.Day(), u.Hour(), u.Minute(), u.Second(), u.Nanosecond()/1e6*1e6, time.UTC)
		if !utf8.ValidString(s1) || !utf8.ValidString(s2) {
			return
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("round trip: wrote\n%+v\nread\n%+v", want, fast)
		}
	})
}

// TestDecodeRowFastPath: every line AppendJSONEachRow writes is read by
// hand (the fuzz targets would pass if the fast path never took a line),
// and lines it does not take still read, as encoding/json reads them.
func TestDecodeRowFastPath(t *testing.T) {
	rows := testRows(50, "src")
	rows[3].RequestBody = strings.Repeat("é\"\\\n\x00\u2028😀", 100)
	rows[4].DurationMS = 3e21
	rows[5].TS = rows[5].TS.In(time.FixedZone("x", -(9*3600 + 30*60)))
	rows[6].Status, rows[6].Attempt = math.MaxUint16, math.MaxUint16
	rows[7].DurationMS = -0.000001
	rows[8].TS = time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC)
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
		if err := decodeRowStd(lines[i], &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x, want) {
			t.Fatalf("row %d: fast path read\n%+v\nencoding/json\n%+v", i, x, want)
		}
		if !x.TS.Equal(row.TS.Truncate(time.Millisecond)) || x.RequestBody != row.RequestBody || x.Status != row.Status {
			t.Fatalf("row %d does not round-trip: %+v, wrote %+v", i, x, row)
		}
	}

	// not the layout AppendJSONEachRow writes: encoding/json decides
	ts := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	for _, tc := range []struct {
		name, line string
		want       hookgate.Exchange
		wantErr    bool
	}{
		{"earlier spool", `{"ts":"2026-11-23T01:02:03Z","exchange_id":"a","direction":2,"status":200}`, hookgate.Exchange{TS: ts, ExchangeID: "a", Direction: hookgate.Outbound, Status: 200}, false},
		{"white space", `{"ts":"2026-11-23 01:02:03", "direction":"inbound", "source":"a"}`, hookgate.Exchange{TS: ts, Direction: hookgate.Inbound, Source: "a"}, false},
		{"order", `{"source":"a","direction":"inbound","ts":"2026-11-23 01:02:03.5"}`, hookgate.Exchange{TS: ts.Add(500 * time.Millisecond), Direction: hookgate.Inbound, Source: "a"}, false},
		{"lone surrogate", `{"ts":"2026-11-23 01:02:03","direction":"inbound","source":"\ud800"}`, hookgate.Exchange{TS: ts, Direction: hookgate.Inbound, Source: "\ufffd"}, false},
		{"invalid UTF-8", `{"ts":"2026-11-23 01:02:03","direction":"inbound","source":"` + "\xff" + `"}`, hookgate.Exchange{TS: ts, Direction: hookgate.Inbound, Source: "\ufffd"}, false},
		{"overflow", `{"ts":"2026-11-23 01:02:03","direction":"inbound","status":70000}`, hookgate.Exchange{}, true},
		{"no such day", `{"ts":"2026-11-31 01:02:03.000","direction":"inbound"}`, hookgate.Exchange{}, true},
		{"no ts", `{"direction":"inbound"}`, hookgate.Exchange{}, true},
		{"no direction", `{"ts":"2026-11-23 01:02:03"}`, hookgate.Exchange{}, true},
		{"unknown direction", `{"ts":"2026-11-23 01:02:03","direction":"sideways"}`, hookgate.Exchange{}, true},
		{"not a time", `{"ts":"not a time","direction":"inbound"}`, hookgate.Exchange{}, true},
		{"torn", `{"ts":"2026-11-23 01:02:03.000","direction":"inbound"`, hookgate.Exchange{}, true},
		{"empty", ``, hookgate.Exchange{}, true},
	} {
		got, err := ParseJSONEachRow([]byte(tc.line))
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseJSONEachRow(%s) error = %v; want error %v", tc.name, err, tc.wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseJSONEachRow(%s) = %+v; want %+v", tc.name, got, tc.want)
		}
	}
}

// spoolRows are rows as the spool holds them in BenchmarkSpoolReplay: a
// 1 KiB form body each.
func spoolRows(n int) []hookgate.Exchange {
	rows := testRows(n, "bench")
	body := strings.Repeat("data%5BFIELDS%5D%5BID%5D=1&", 40)
	for i := range rows {
		rows[i].RequestBody = body
	}
	return rows
}

// BenchmarkDecodeRow reads spool lines of 1 KiB bodies by hand and with
// encoding/json (decodeRowStd, the fallback), in the same run.
func BenchmarkDecodeRow(b *testing.B) {
	rows := spoolRows(1000)
	data, err := encodeRows(rows)
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))[:len(rows)]
	for _, bc := range []struct {
		name   string
		decode func([]byte, *hookgate.Exchange) error
	}{
		{"hand", decodeRow},
		{"encoding_json", decodeRowStd},
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

// appendRowStd is what the encoder would be with encoding/json: each
// column's value marshalled after its key. It writes the same line as
// AppendJSONEachRow but for HTML escaping; BenchmarkEncodeRow measures the
// hand-written encoder against it.
func appendRowStd(b []byte, x *hookgate.Exchange) ([]byte, error) {
	for i := range columns {
		b = append(b, keys[i]...)
		v := columns[i].value(x)
		if columns[i].kind == kindTime {
			v = x.TS.UTC().Format(TimeLayout)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return b, err
		}
		b = append(b, j...)
	}
	return append(b, "}\n"...), nil
}

// BenchmarkEncodeRow writes spool lines of 1 KiB bodies by hand and with
// encoding/json, in the same run.
func BenchmarkEncodeRow(b *testing.B) {
	rows := spoolRows(1000)
	for _, bc := range []struct {
		name   string
		encode func([]byte, *hookgate.Exchange) ([]byte, error)
	}{
		{"hand", AppendJSONEachRow},
		{"encoding_json", appendRowStd},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for i := 0; b.Loop(); i++ {
				var err error
				if buf, err = bc.encode(buf[:0], &rows[i%len(rows)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
