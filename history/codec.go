package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hookgate/hookgate"
)

// The JSONEachRow codec: one row of hookgate.exchanges as one line of JSON,
// the columns (columns.go) by name in table order, each in the form
// ClickHouse's JSONEachRow reads: ts as UTC text with milliseconds,
// direction by its Enum8 name, numbers as numbers. NDJSON history files
// and the spool both hold these lines.
//
// Both directions are written by hand, without reflection: the spool is
// written on the request path when the queue is full and for every batch
// while ClickHouse is down, and read back row by row when it returns
// (docs/performance.md, "Hand-written code and what pays for it", has the
// measurements that pay for it). Reading falls back to encoding/json for
// any line not in the exact layout AppendJSONEachRow writes (spools of
// earlier versions, ClickHouse's own output, edited files); FuzzDecodeRow
// holds the two readers to the same rows.

// TimeLayout is the text form of ts: UTC with milliseconds, what a
// DateTime64(3) column reads in JSONEachRow. ClickHouse 18.16's DateTime
// reads it with the setting date_time_input_format=best_effort (it drops
// the fraction).
const TimeLayout = "2006-01-02 15:04:05.000"

// keys are the JSON keys of the columns with what precedes them:
// `{"ts":`, `,"exchange_id":`, ...
var keys = columnKeys()

func columnKeys() [len(columns)]string {
	var k [len(columns)]string
	for i := range columns {
		k[i] = `,"` + columns[i].name + `":`
	}
	k[0] = "{" + k[0][1:]
	return k
}

var errBadValue = errors.New("history: value not representable in JSONEachRow")

// AppendJSONEachRow appends x as one JSONEachRow line (with its newline)
// to b. It fails for a ts outside years 0–9999, a direction other than
// inbound or outbound and a duration that is NaN or infinite (normalize
// keeps such rows out of the writer).
func AppendJSONEachRow(b []byte, x *hookgate.Exchange) ([]byte, error) {
	for i := range columns {
		c := &columns[i]
		b = append(b, keys[i]...)
		switch c.kind {
		case kindString:
			b = hookgate.AppendJSONString(b, *c.str(x), false)
		case kindTime:
			t := x.TS.UTC()
			if y := t.Year(); y < 0 || y > 9999 {
				return b, fmt.Errorf("%w: ts %s", errBadValue, x.TS)
			}
			b = append(b, '"')
			b = t.AppendFormat(b, TimeLayout)
			b = append(b, '"')
		case kindDirection:
			if x.Direction != hookgate.Inbound && x.Direction != hookgate.Outbound {
				return b, fmt.Errorf("%w: direction %d", errBadValue, x.Direction)
			}
			b = append(b, '"')
			b = append(b, x.Direction.String()...)
			b = append(b, '"')
		case kindUint16:
			b = strconv.AppendUint(b, uint64(*c.u16(x)), 10)
		case kindFloat32:
			f := float64(x.DurationMS)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return b, fmt.Errorf("%w: duration_ms %v", errBadValue, f)
			}
			b = appendFloat32(b, x.DurationMS)
		}
	}
	return append(b, "}\n"...), nil
}

// appendFloat32 writes f as encoding/json writes a float32 (finite f).
func appendFloat32(b []byte, f float32) []byte {
	format := byte('f')
	if abs := math.Abs(float64(f)); abs != 0 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, float64(f), format, -1, 32)
	if format == 'e' { // e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// encodeRows writes rows as JSONEachRow lines into one buffer.
func encodeRows(rows []hookgate.Exchange) ([]byte, error) {
	n := 0
	for i := range rows {
		n += 400 + int(rowSize(&rows[i]))*11/10
	}
	b := make([]byte, 0, n)
	for i := range rows {
		var err error
		if b, err = AppendJSONEachRow(b, &rows[i]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// ParseJSONEachRow reads one JSONEachRow line (the inverse of
// AppendJSONEachRow). It also reads what ClickHouse's own JSONEachRow
// output and earlier versions of the spool hold: ts without a fraction or
// in RFC 3339, direction as the Enum8 number, columns in any order.
func ParseJSONEachRow(line []byte) (hookgate.Exchange, error) {
	var x hookgate.Exchange
	err := decodeRow(line, &x)
	return x, err
}

// decodeRow reads one line into x, which must be the zero Exchange: by
// hand when the line is in the exact layout AppendJSONEachRow writes,
// every string of the row unescaped into one allocation; any other line
// with encoding/json (decodeRowStd).
func decodeRow(line []byte, x *hookgate.Exchange) error {
	if decodeRowFast(line, x) {
		return nil
	}
	*x = hookgate.Exchange{}
	return decodeRowStd(line, x)
}

// decodeRowStd reads a JSON object of the columns by name with
// encoding/json. Unknown keys are ignored, missing columns left zero but
// for ts and direction, which a row must have.
func decodeRowStd(line []byte, x *hookgate.Exchange) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	for i := range columns {
		c := &columns[i]
		raw, ok := m[c.name]
		if !ok {
			if c.kind == kindTime || c.kind == kindDirection {
				return fmt.Errorf("history: no %s", c.name)
			}
			continue
		}
		var err error
		switch c.kind {
		case kindString:
			err = json.Unmarshal(raw, c.str(x))
		case kindTime:
			x.TS, err = parseTS(raw)
		case kindDirection:
			x.Direction, err = parseDirection(raw)
		case kindUint16:
			err = json.Unmarshal(raw, c.u16(x))
		case kindFloat32:
			err = json.Unmarshal(raw, &x.DurationMS)
		}
		if err != nil {
			return fmt.Errorf("history: column %s: %w", c.name, err)
		}
	}
	return nil
}

// parseTS reads ts as TimeLayout (with any fraction or none) or RFC 3339.
func parseTS(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, err
	}
	for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q", s)
}

// parseDirection reads the Enum8 name or number.
func parseDirection(raw json.RawMessage) (hookgate.Direction, error) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var n uint8
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, err
		}
		s = strconv.Itoa(int(n))
	}
	if d := hookgate.ParseDirection(s); d != 0 {
		return d, nil
	}
	return 0, fmt.Errorf("unknown direction %s", raw)
}

// rowDecoder reads AppendJSONEachRow's layout: fixed keys in a fixed
// order, no white space. Any other input makes it give up (ok false),
// never guess.
type rowDecoder struct {
	in  []byte
	pos int
	buf []byte // the row's strings, unescaped, one after the other
	ok  bool
}

// span is a string column's place in rowDecoder.buf.
type span struct{ from, to int }

func decodeRowFast(line []byte, x *hookgate.Exchange) bool {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	d := rowDecoder{in: line, ok: true, buf: make([]byte, 0, len(line))}
	var spans [len(columns)]span
	for i := range columns {
		c := &columns[i]
		d.lit(keys[i])
		switch c.kind {
		case kindString:
			spans[i] = d.str()
		case kindTime:
			x.TS = d.time()
		case kindDirection:
			x.Direction = d.direction()
		case kindUint16:
			*c.u16(x) = uint16(d.uint(math.MaxUint16))
		case kindFloat32:
			x.DurationMS = d.float32()
		}
		if !d.ok {
			return false
		}
	}
	d.lit("}")
	if !d.ok || d.pos != len(d.in) {
		return false
	}
	all := string(d.buf)
	for i := range columns {
		if columns[i].kind == kindString {
			*columns[i].str(x) = all[spans[i].from:spans[i].to]
		}
	}
	return true
}

// lit consumes s.
func (d *rowDecoder) lit(s string) {
	if !d.ok || len(d.in)-d.pos < len(s) || string(d.in[d.pos:d.pos+len(s)]) != s {
		d.ok = false
		return
	}
	d.pos += len(s)
}

// time consumes "YYYY-MM-DD hh:mm:ss.mmm" (TimeLayout, quoted), a valid
// time in UTC; anything else is left to encoding/json.
func (d *rowDecoder) time() time.Time {
	const n = len(TimeLayout) + 2
	if !d.ok || len(d.in)-d.pos < n {
		d.ok = false
		return time.Time{}
	}
	s := d.in[d.pos : d.pos+n]
	num := func(from, to int) int {
		v := 0
		for _, c := range s[from:to] {
			if c < '0' || c > '9' {
				d.ok = false
				return 0
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	if s[0] != '"' || s[5] != '-' || s[8] != '-' || s[11] != ' ' || s[14] != ':' || s[17] != ':' || s[20] != '.' || s[24] != '"' {
		d.ok = false
		return time.Time{}
	}
	year, month, day := num(1, 5), num(6, 8), num(9, 11)
	hour, minute, sec, ms := num(12, 14), num(15, 17), num(18, 20), num(21, 24)
	if !d.ok || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		d.ok = false
		return time.Time{}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != day { // 31 November would become 1 December
		d.ok = false
		return time.Time{}
	}
	d.pos += n
	return t
}

// direction consumes "inbound" or "outbound".
func (d *rowDecoder) direction() hookgate.Direction {
	for _, dir := range [...]hookgate.Direction{hookgate.Inbound, hookgate.Outbound} {
		name := dir.String()
		if end := d.pos + len(name) + 2; d.ok && end <= len(d.in) && d.in[d.pos] == '"' &&
			string(d.in[d.pos+1:end-1]) == name && d.in[end-1] == '"' {
			d.pos = end
			return dir
		}
	}
	d.ok = false
	return 0
}

// str consumes a JSON string, unescaped into buf.
func (d *rowDecoder) str() span {
	if !d.ok || d.pos >= len(d.in) || d.in[d.pos] != '"' {
		d.ok = false
		return span{}
	}
	d.pos++
	from, run, ascii := len(d.buf), d.pos, true
	for d.pos < len(d.in) {
		switch c := d.in[d.pos]; {
		case c == '"':
			d.buf = append(d.buf, d.in[run:d.pos]...)
			d.pos++
			// encoding/json turns invalid UTF-8 into U+FFFD: leave that to it.
			// Escapes write whole runes, so checking the result checks the
			// raw runs between them.
			if !ascii && !utf8.Valid(d.buf[from:]) {
				d.ok = false
			}
			return span{from, len(d.buf)}
		case c == '\\':
			d.buf = append(d.buf, d.in[run:d.pos]...)
			if !d.escape() {
				d.ok = false
				return span{}
			}
			run = d.pos
		case c < 0x20: // not allowed raw in a JSON string
			d.ok = false
			return span{}
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			d.pos++
		}
	}
	d.ok = false // no closing quote
	return span{}
}

// escape appends the character of the escape at pos to buf. Surrogates
// (halves of a UTF-16 pair, or lone) are left to encoding/json.
func (d *rowDecoder) escape() bool {
	if d.pos+1 >= len(d.in) {
		return false
	}
	c := d.in[d.pos+1]
	switch c {
	case '"', '\\', '/':
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		if len(d.in)-d.pos < 6 {
			return false
		}
		var r rune
		for _, h := range d.in[d.pos+2 : d.pos+6] {
			switch {
			case '0' <= h && h <= '9':
				h -= '0'
			case 'a' <= h && h <= 'f':
				h -= 'a' - 10
			case 'A' <= h && h <= 'F':
				h -= 'A' - 10
			default:
				return false
			}
			r = r<<4 | rune(h)
		}
		if utf16.IsSurrogate(r) {
			return false
		}
		d.buf = utf8.AppendRune(d.buf, r)
		d.pos += 6
		return true
	default:
		return false
	}
	d.buf = append(d.buf, c)
	d.pos += 2
	return true
}

// uint consumes a JSON integer no greater than limit.
func (d *rowDecoder) uint(limit uint64) uint64 {
	if !d.ok {
		return 0
	}
	from := d.pos
	var v uint64
	for d.pos < len(d.in) && '0' <= d.in[d.pos] && d.in[d.pos] <= '9' {
		v = v*10 + uint64(d.in[d.pos]-'0')
		if v > limit {
			d.ok = false
			return 0
		}
		d.pos++
	}
	n := d.pos - from
	if n == 0 || (n > 1 && d.in[from] == '0') || d.pos < len(d.in) && (d.in[d.pos] == '.' || d.in[d.pos] == 'e' || d.in[d.pos] == 'E') {
		d.ok = false
		return 0
	}
	return v
}

// float32 consumes a JSON number and converts it as encoding/json does
// for a float32 field.
func (d *rowDecoder) float32() float32 {
	if !d.ok {
		return 0
	}
	from := d.pos
	digits := func() int {
		n := 0
		for d.pos < len(d.in) && '0' <= d.in[d.pos] && d.in[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(d.in) && d.in[d.pos] == '-' {
		d.pos++
	}
	intStart := d.pos
	if n := digits(); n == 0 || (n > 1 && d.in[intStart] == '0') {
		d.ok = false
		return 0
	}
	if d.pos < len(d.in) && d.in[d.pos] == '.' {
		d.pos++
		if digits() == 0 {
			d.ok = false
			return 0
		}
	}
	if d.pos < len(d.in) && (d.in[d.pos] == 'e' || d.in[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.in) && (d.in[d.pos] == '+' || d.in[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			d.ok = false
			return 0
		}
	}
	f, err := strconv.ParseFloat(string(d.in[from:d.pos]), 32)
	if err != nil {
		d.ok = false
		return 0
	}
	return float32(f)
}
