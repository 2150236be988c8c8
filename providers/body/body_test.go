package body_test

import (
	"encoding/json"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/body"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		ct   string
		want body.Kind
	}{
		{"application/json", body.JSON},
		{"Application/JSON; charset=utf-8", body.JSON},
		{"application/vnd.api+json", body.JSON},
		{"application/x-www-form-urlencoded", body.Form},
		{"multipart/form-data; boundary=abc", body.Multipart},
		{"text/plain", body.Other},
		{"", body.Other},
		{";;;", body.Other},
	}
	for _, tc := range tests {
		if got, _ := body.KindOf(tc.ct); got != tc.want {
			t.Errorf("KindOf(%q) = %v; want %v", tc.ct, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, ct, body string
		accept         []body.Kind
		want           string
	}{
		{"json", "application/json", `{"a":1}`, []body.Kind{body.JSON}, ""},
		{"json refused", "application/json", `{"a":1}`, []body.Kind{body.Form}, hookgate.EUnsupportedMedia},
		{"any", "image/png", "\x89PNG", []body.Kind{body.Other}, ""},
		{"415 before 400", "text/plain", "", []body.Kind{body.JSON}, hookgate.EUnsupportedMedia},
		{"empty", "application/json", " ", []body.Kind{body.JSON}, hookgate.EBadRequest},
		{"bad json", "application/json", `{`, []body.Kind{body.JSON}, hookgate.EBadRequest},
		{"bad form", "application/x-www-form-urlencoded", `a=%`, []body.Kind{body.Form}, hookgate.EBadRequest},
		{"multipart no boundary", "multipart/form-data", `x`, []body.Kind{body.Multipart}, hookgate.EBadRequest},
		{"multipart empty form", "multipart/form-data; boundary=b", "--b--\r\n", []body.Kind{body.Multipart}, ""},
	}
	for _, tc := range tests {
		_, err := body.Decode(tc.ct, []byte(tc.body), tc.accept...)
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Decode(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func TestParamsFormOverQuery(t *testing.T) {
	p := body.Params(map[string][]string{"a": {"q1", "q2"}, "b": {"q"}}, map[string][]string{"a": {"f"}, "c": {}})
	if p["a"] != "f" || p["b"] != "q" || len(p) != 2 {
		t.Errorf("Params = %v; want a=f b=q", p)
	}
}

func TestStringField(t *testing.T) {
	tests := []struct {
		doc, want string
		ok        bool
	}{
		{`{"type":"x"}`, "x", true},
		{`{"type":1}`, "", false},
		{`[]`, "", false},
		{`{"other":"x"}`, "", false},
		{` { "a" : {"type":"in"}, "b":["type","}"], "type" : "top" } `, "top", true},
		{`{"type":"first","type":"last"}`, "last", true},
		{`{"typ\u0065":"escaped key"}`, "escaped key", true},
		{`{"type":"a\"b\\"}`, `a"b\`, true},
		{`{"type":null}`, "", true}, // as json.Unmarshal of null into a string: no error
		{`"type"`, "", false},
	}
	for _, tc := range tests {
		if got, ok := body.StringField([]byte(tc.doc), "type"); got != tc.want || ok != tc.ok {
			t.Errorf("StringField(%s) = %q, %v; want %q, %v", tc.doc, got, ok, tc.want, tc.ok)
		}
	}
}

// StringField must find what unmarshaling the whole object finds, for
// every valid JSON document.
func FuzzStringField(f *testing.F) {
	for _, s := range []string{
		`{"type":"x"}`, `{"type":1}`, `[]`, `{}`, `{"a":{"type":"no"},"type":"yes"}`,
		`{"type":"a","type":"b"}`, `{"typ\u0065":"k"}`, `{"t":[1,{"type":"x"},"]"],"type":"\u00e9"}`,
		`{"type":"\ud800"}`, ` {"type" : "s" } `, `{"type":true}`, `null`, `"type"`,
		`{"id":"evt_1","type":"a.b"}`, `{"type":"a","id":7,"i\u0064":"x","id":"y"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if !json.Valid([]byte(doc)) {
			return
		}
		var obj map[string]json.RawMessage
		isObj := json.Unmarshal([]byte(doc), &obj) == nil
		field := func(name string) (string, bool) {
			var s string
			if raw, ok := obj[name]; isObj && ok && json.Unmarshal(raw, &s) == nil {
				return s, true
			}
			return "", false
		}
		want, wantOK := field("type")
		got, ok := body.StringField([]byte(doc), "type")
		if got != want || ok != wantOK {
			t.Fatalf("StringField(%s) = %q, %v; unmarshaling the object: %q, %v", doc, got, ok, want, wantOK)
		}
		wantID, _ := field("id")
		if got := body.StringFields([]byte(doc), "type", "id"); got[0] != want || got[1] != wantID {
			t.Fatalf("StringFields(%s, type, id) = %q; unmarshaling the object: [%q %q]", doc, got, want, wantID)
		}
	})
}
