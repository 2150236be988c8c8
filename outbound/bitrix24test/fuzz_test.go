package bitrix24test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzBracketParams feeds the simulator's PHP-style parameter parser
// arbitrary query strings: it must never panic, and what it builds must
// convert to plain values and to JSON.
func FuzzBracketParams(f *testing.F) {
	for _, s := range []string{
		"fields[TITLE]=Acme&fields[PHONE][0][VALUE]=%2B7900&select[]=ID&select[]=TITLE",
		"filter[>ID]=10&order[ID]=DESC&start=50",
		"a[b]=1&a[b][c]=2&a=3",
		"a[=1&b]=2&[x]=3&c[d]e=4",
		"cmd[one]=crm.deal.get%3Fid%3D1&halt=0",
		"%zz=1",
		"a[][]=1&a[][]=2",
		"&&=&a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		params := newObject()
		if err := parseQuery(params, q); err != nil {
			return // refused: fine, as long as it did not panic
		}
		p := plain(params)
		if _, err := json.Marshal(p); err != nil {
			t.Errorf("plain(parseQuery(%q)) does not encode: %v", q, err)
		}
		for _, k := range params.keys {
			_ = list(params.vals[k])
			_ = scalar(params.vals[k])
		}
	})
}

// FuzzBracketRoundTrip encodes a nested value the way the client does
// (PHP's http_build_query: url-escaped bracket keys) and checks that the
// simulator's parser reads the same nesting back.
func FuzzBracketRoundTrip(f *testing.F) {
	f.Add("TITLE", "Acme & Co", "PHONE", "+7 900")
	f.Add("ID", "", "VALUE", "x=y&z")
	f.Add("ü", "%41", "a b", "]")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if !plainKey(k1) || !plainKey(k2) || k1 == k2 {
			t.Skip() // brackets in a key are PHP syntax, not a round trip
		}
		q := url.QueryEscape("fields["+k1+"]") + "=" + url.QueryEscape(v1) +
			"&" + url.QueryEscape("fields["+k2+"][0][VALUE]") + "=" + url.QueryEscape(v2) +
			"&" + url.QueryEscape("select[]") + "=" + url.QueryEscape(k1) +
			"&" + url.QueryEscape("select[]") + "=" + url.QueryEscape(k2)
		params := newObject()
		if err := parseQuery(params, q); err != nil {
			t.Fatalf("parseQuery(%q) = %v", q, err)
		}
		fv, _ := params.get("fields")
		fields, ok := fv.(*object)
		if !ok {
			t.Fatalf("parseQuery(%q): fields = %#v; want an object", q, fv)
		}
		if got, _ := fields.get(k1); got != v1 {
			t.Errorf("parseQuery(%q): fields[%q] = %#v; want %q", q, k1, got, v1)
		}
		inner, _ := fields.get(k2)
		io, ok := inner.(*object)
		if !ok {
			t.Fatalf("parseQuery(%q): fields[%q] = %#v; want an object", q, k2, inner)
		}
		zero, _ := io.get("0")
		zo, ok := zero.(*object)
		if !ok {
			t.Fatalf("parseQuery(%q): fields[%q][0] = %#v; want an object", q, k2, zero)
		}
		if got, _ := zo.get("VALUE"); got != v2 {
			t.Errorf("parseQuery(%q): fields[%q][0][VALUE] = %#v; want %q", q, k2, got, v2)
		}
		sv, _ := params.get("select")
		sel := list(sv)
		if len(sel) != 2 || sel[0] != k1 || sel[1] != k2 {
			t.Errorf("parseQuery(%q): select = %#v; want [%q %q]", q, sel, k1, k2)
		}
	})
}

func plainKey(k string) bool { return k != "" && !strings.ContainsAny(k, "[]") }
