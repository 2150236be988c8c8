package outbound

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// FuzzEncodeParams checks that EncodeParams never panics and that the
// pairs it writes decode, with net/url, back to the values put in, under
// the bracket keys Bitrix24 (PHP) reads: k=v, fields[k]=v, list[i]=v.
func FuzzEncodeParams(f *testing.F) {
	f.Add("TITLE", "Acme & Co", "PHONE", "+7 (900) 000-00-00")
	f.Add("id", "9", "0", "")
	f.Add("a b", "ü=1&x=2", "[x]", "%zz")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if k1 == "" || k1 == "fields" || k1 == "list" || k2 == "" || k2 == "n" || k2 == "ok" {
			t.Skip() // empty keys and collisions are not a round trip
		}
		in := map[string]any{
			k1:       v1,
			"fields": map[string]any{k2: v2, "n": 42, "ok": true},
			"list":   []any{v1, v2},
		}
		enc, err := EncodeParams(in)
		if err != nil {
			t.Fatalf("EncodeParams(%q) = %v", in, err)
		}
		got, err := url.ParseQuery(enc)
		if err != nil {
			t.Fatalf("ParseQuery(EncodeParams(...) = %q) = %v", enc, err)
		}
		want := map[string]string{
			k1:                   v1,
			"fields[" + k2 + "]": v2,
			"list[0]":            v1,
			"list[1]":            v2,
			"fields[n]":          "42",
			"fields[ok]":         "1",
		}
		for k, v := range want {
			if vs := got[k]; len(vs) != 1 || vs[0] != v {
				t.Errorf("EncodeParams: %q decodes to %q; want [%q] (encoded %q)", k, vs, v, enc)
			}
		}
		// keys are sorted at every level: a stable wire form
		if again, _ := EncodeParams(in); again != enc {
			t.Errorf("EncodeParams is not stable: %q then %q", enc, again)
		}
	})
}

// FuzzParseEnvelope feeds the client's answer parser arbitrary bodies,
// statuses and Retry-After headers. It must never panic, and its answer
// must follow the envelope's rules: an error status or an "error" member is
// an *APIError carrying that code; otherwise a Result.
func FuzzParseEnvelope(f *testing.F) {
	f.Add(200, "", []byte(`{"result":{"ID":"9"},"time":{"start":1700000000.1,"finish":1700000000.2,"operating_reset_at":1700000600}}`))
	f.Add(200, "", []byte(`{"result":[1,2],"next":50,"total":120}`))
	f.Add(503, "2", []byte(`{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}`))
	f.Add(429, "", []byte(`{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked","time":{"operating":480.5,"operating_reset_at":1700000600}}`))
	f.Add(404, "", []byte(`Not found`))
	f.Add(200, "", []byte(`<html>`))
	f.Add(200, "", []byte(`{"error":null,"result":null}`))
	f.Add(500, "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`{}`))
	f.Add(200, "", []byte(`{"error":"","error_description":""}`))
	f.Fuzz(func(t *testing.T, status int, retry string, body []byte) {
		h := http.Header{}
		if retry != "" {
			h.Set("Retry-After", retry)
		}
		res, err := parse(status, h, body)
		var probe struct {
			Error *string `json:"error"`
		}
		isJSON := json.Unmarshal(body, &probe) == nil
		if err == nil {
			if res == nil {
				t.Fatalf("parse(%d, %q) = nil, nil", status, body)
			}
			if status >= 300 {
				t.Errorf("parse(%d, %q) = a result; want an error for the status", status, body)
			}
			if !isJSON || probe.Error != nil {
				t.Errorf("parse(%d, %q) = a result; want an error", status, body)
			}
			return
		}
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("parse(%d, %q) = %v (%T); want an *APIError", status, body, err, err)
		}
		if ae.Status != status {
			t.Errorf("parse(%d, ...).Status = %d", status, ae.Status)
		}
		if isJSON && probe.Error != nil && ae.Code != *probe.Error {
			t.Errorf("parse(%d, %q).Code = %q; want %q", status, body, ae.Code, *probe.Error)
		}
		if ae.RetryAfter < 0 {
			t.Errorf("parse with Retry-After %q: RetryAfter = %v; want >= 0", retry, ae.RetryAfter)
		}
		_ = ae.Error()
		_ = ae.Transient()
		if ae.Time != nil {
			_, _ = ae.Time.resetIn()
			_ = ae.Time.ResetAt()
		}
	})
}
