package history

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hookgate/hookgate"
)

// decodeRow reads one spool line into x, which must be the zero Exchange:
// the result and the error (nil or not) of json.Unmarshal(line, x), which
// FuzzDecodeRow holds it to. A line in the exact layout appendRow writes
// is read without reflection, every string of the row unescaped into one
// allocation (replaying a spool after a ClickHouse outage spent most of
// its CPU in encoding/json); any other line goes to encoding/json.
func decodeRow(line []byte, x *hookgate.Exchange) error {
	if decodeRowFast(line, x) {
		return nil
	}
	*x = hookgate.Exchange{}
	return json.Unmarshal(line, x)
}

// rowDecoder reads appendRow's layout: fixed keys in a fixed order, no
// white space. Any other input makes it give up (ok false), never guess.
type rowDecoder struct {
	in  []byte
	pos int
	buf []byte // the row's strings, unescaped, one after the other
	ok  bool
}

// span is a string field's place in rowDecoder.buf.
type span struct{ from, to int }

func decodeRowFast(line []byte, x *hookgate.Exchange) bool {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	d := rowDecoder{in: line, ok: true, buf: make([]byte, 0, len(line))}
	d.lit(`{"ts":`)
	ts := d.raw()
	if !d.ok || x.TS.UnmarshalJSON(ts) != nil {
		return false
	}
	var s [15]span
	s[0] = d.field(`,"exchange_id":`)
	s[1] = d.field(`,"event_id":`)
	d.lit(`,"direction":`)
	dir := d.uint(math.MaxUint8)
	s[2] = d.field(`,"source":`)
	s[3] = d.field(`,"provider":`)
	s[4] = d.field(`,"event":`)
	s[5] = d.field(`,"operation":`)
	s[6] = d.field(`,"http_method":`)
	s[7] = d.field(`,"url":`)
	d.lit(`,"status":`)
	status := d.uint(math.MaxUint16)
	s[8] = d.field(`,"outcome":`)
	s[9] = d.field(`,"error":`)
	d.lit(`,"attempt":`)
	attempt := d.uint(math.MaxUint16)
	d.lit(`,"duration_ms":`)
	dur := d.float32()
	s[10] = d.field(`,"request_headers":`)
	s[11] = d.field(`,"request_body":`)
	s[12] = d.field(`,"response_body":`)
	s[13] = d.field(`,"remote_addr":`)
	d.lit(`}`)
	if !d.ok || d.pos != len(d.in) {
		return false
	}
	all := string(d.buf)
	str := func(i int) string { return all[s[i].from:s[i].to] }
	x.ExchangeID, x.EventID = str(0), str(1)
	x.Direction = hookgate.Direction(dir)
	x.Source, x.Provider, x.Event, x.Operation = str(2), str(3), str(4), str(5)
	x.HTTPMethod, x.URL = str(6), str(7)
	x.Status = uint16(status)
	x.Outcome, x.Error = str(8), str(9)
	x.Attempt = uint16(attempt)
	x.DurationMS = dur
	x.RequestHeaders, x.RequestBody, x.ResponseBody, x.RemoteAddr = str(10), str(11), str(12), str(13)
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

// field consumes key and a JSON string, unescaped into buf.
func (d *rowDecoder) field(key string) span {
	d.lit(key)
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

// raw consumes a JSON string without escapes and returns it with its
// quotes, as encoding/json hands it to an UnmarshalJSON method.
func (d *rowDecoder) raw() []byte {
	if !d.ok || d.pos >= len(d.in) || d.in[d.pos] != '"' {
		d.ok = false
		return nil
	}
	from := d.pos
	for d.pos++; d.pos < len(d.in); d.pos++ {
		switch c := d.in[d.pos]; {
		case c == '"':
			d.pos++
			return d.in[from:d.pos]
		case c == '\\' || c < 0x20:
			d.ok = false
			return nil
		}
	}
	d.ok = false
	return nil
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
