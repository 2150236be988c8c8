package bitrix24_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/bitrix24"
	"github.com/hookgate/hookgate/providers/providertest"
)

// An ONCRMDEALADD call from an outgoing webhook, as Bitrix24 sends it
// (reference/bitrix24.md, section 2).
const (
	exampleToken = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
	exampleBody  = "event=ONCRMDEALADD&event_handler_id=975&data%5BFIELDS%5D%5BID%5D=7405&ts=1766047124&auth%5Bdomain%5D=some-domain.bitrix24.com&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bmember_id%5D=d897063e1ce7c5eb9f04b9751eef5915&auth%5Bapplication_token%5D=jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
	// exampleDedup is the SHA-256 of the length-prefixed event,
	// data[FIELDS][ID] and ts of the example, computed with Python:
	//   f = lambda s: struct.pack(">Q", len(s)) + s
	//   sha256(f(b"event") + f(b"ONCRMDEALADD") + f(b"data[FIELDS][ID]") + f(b"7405") + f(b"ts") + f(b"1766047124"))
	exampleDedup = "4dd26699cdb165d666426627190669bcdf9f1a8905cb635812f5ca685c4fc427"
	formType     = "application/x-www-form-urlencoded"
)

func newProvider(t testing.TB, c bitrix24.Config) *bitrix24.Provider {
	t.Helper()
	p, err := bitrix24.New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return p
}

func TestParseExample(t *testing.T) {
	p := newProvider(t, bitrix24.Config{})
	req := providertest.NewRequest("deals", formType, []byte(exampleBody))
	msg, err := p.Parse(req)
	if err != nil {
		t.Fatalf("Parse(example) = %v", err)
	}
	want := map[string]string{
		"event":                   "ONCRMDEALADD",
		"event_handler_id":        "975",
		"data[FIELDS][ID]":        "7405",
		"ts":                      "1766047124",
		"auth[domain]":            "some-domain.bitrix24.com",
		"auth[client_endpoint]":   "https://some-domain.bitrix24.com/rest/",
		"auth[server_endpoint]":   "https://oauth.bitrix.info/rest/",
		"auth[member_id]":         "d897063e1ce7c5eb9f04b9751eef5915",
		"auth[application_token]": exampleToken,
	}
	if msg.Event != "ONCRMDEALADD" {
		t.Errorf("Parse(example).Event = %q; want ONCRMDEALADD", msg.Event)
	}
	if len(msg.Params) != len(want) {
		t.Errorf("Parse(example).Params = %v; want %v", msg.Params, want)
	}
	for k, v := range want {
		if msg.Params[k] != v {
			t.Errorf("Parse(example).Params[%q] = %q; want %q", k, msg.Params[k], v)
		}
	}
	if msg.DedupKey != exampleDedup {
		t.Errorf("Parse(example).DedupKey = %q; want %q", msg.DedupKey, exampleDedup)
	}
	if len(msg.Redact) != 1 || msg.Redact[0] != "auth[application_token]" {
		t.Errorf("Parse(example).Redact = %q; want [auth[application_token]]", msg.Redact)
	}
	if err := p.Verify(context.Background(), req, msg, providertest.Store(exampleToken)); err != nil {
		t.Errorf("Verify(example) = %v; want nil", err)
	}
}

func TestDedupKey(t *testing.T) {
	base := func() url.Values {
		v, _ := url.ParseQuery(exampleBody)
		return v
	}
	key := bitrix24.DedupKey(base())
	tests := []struct {
		name string
		edit func(url.Values)
		same bool
	}{
		{"other auth fields", func(v url.Values) { v.Set("auth[member_id]", "x"); v.Set("auth[application_token]", "y") }, true},
		{"other handler id", func(v url.Values) { v.Set("event_handler_id", "976") }, true},
		{"other deal", func(v url.Values) { v.Set("data[FIELDS][ID]", "7406") }, false},
		{"extra data field", func(v url.Values) { v.Set("data[FIELDS][ENTITY_TYPE_ID]", "2") }, false},
		{"other ts", func(v url.Values) { v.Set("ts", "1766047125") }, false},
		{"other event", func(v url.Values) { v.Set("event", "ONCRMDEALUPDATE") }, false},
		{"boundary moved", func(v url.Values) {
			v.Del("data[FIELDS][ID]")
			v.Set("data[FIELDS][ID]", "74")
			v.Set("data[FIELDS][ID]5", "")
		}, false},
	}
	for _, tc := range tests {
		v := base()
		tc.edit(v)
		if got := bitrix24.DedupKey(v); (got == key) != tc.same {
			t.Errorf("DedupKey(%s) = %q, example %q; want same %v", tc.name, got, key, tc.same)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		wantCode                string
	}{
		{"charset", formType + "; charset=UTF-8", exampleBody, ""},
		{"upper-case media type", "Application/X-WWW-Form-Urlencoded", exampleBody, ""},
		{"json", "application/json", `{"event":"ONCRMDEALADD"}`, hookgate.EUnsupportedMedia},
		{"multipart", "multipart/form-data; boundary=x", exampleBody, hookgate.EUnsupportedMedia},
		{"no content type", "", exampleBody, hookgate.EUnsupportedMedia},
		{"empty", formType, "", hookgate.EBadRequest},
		{"blank", formType, "  \n", hookgate.EBadRequest},
		{"bad escape", formType, "event=ONCRMDEALADD&data%ZZ=1", hookgate.EBadRequest},
		{"no event", formType, "data%5BFIELDS%5D%5BID%5D=1", hookgate.EBadRequest},
		{"empty event", formType, "event=&data%5BFIELDS%5D%5BID%5D=1", hookgate.EBadRequest},
	}
	p := newProvider(t, bitrix24.Config{})
	for _, tc := range tests {
		_, err := p.Parse(providertest.NewRequest("deals", tc.contentType, []byte(tc.body)))
		if got := hookgate.ErrorCode(err); got != tc.wantCode {
			t.Errorf("Parse(%s) = %v; want code %q", tc.name, err, tc.wantCode)
		}
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name, param, body string
		secrets           []string
		want              string
	}{
		{"right token", "", exampleBody, []string{exampleToken}, ""},
		{"second secret", "", exampleBody, []string{"new-token-0000", exampleToken}, ""},
		{"wrong token", "", exampleBody, []string{"some-other-token"}, hookgate.EInvalidToken},
		{"prefix of the token", "", exampleBody, []string{exampleToken[:10]}, hookgate.EInvalidToken},
		{"no secrets", "", exampleBody, nil, hookgate.EInvalidToken},
		{"empty secret, empty token", "", "event=X&auth%5Bapplication_token%5D=", []string{""}, hookgate.EInvalidToken},
		{"no token", "", "event=X", []string{exampleToken}, hookgate.EInvalidToken},
		{"custom parameter", "auth[access_token]", "event=X&auth%5Baccess_token%5D=" + exampleToken, []string{exampleToken}, ""},
		{"custom parameter, token elsewhere", "auth[access_token]", exampleBody, []string{exampleToken}, hookgate.EInvalidToken},
	}
	for _, tc := range tests {
		p := newProvider(t, bitrix24.Config{TokenParameter: tc.param})
		req := providertest.NewRequest("deals", formType, []byte(tc.body))
		msg, err := p.Parse(req)
		if err != nil {
			t.Fatalf("Parse(%s) = %v", tc.name, err)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(tc.secrets...))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), exampleToken) {
			t.Errorf("Verify(%s) = %q; it shows the token", tc.name, err)
		}
	}
}

// The token is read from the form body only: Bitrix24 posts it there, and a
// token in the query string (which proxies and access logs keep) is not a
// credential, even when it is the right one.
func TestQueryStringToken(t *testing.T) {
	const noToken = "event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=1"
	tests := []struct {
		name, param, body string
		query             url.Values
		want              string
	}{
		{"right token in the query only", "", noToken, url.Values{"auth[application_token]": {exampleToken}}, hookgate.EInvalidToken},
		{"custom parameter in the query only", "key", noToken, url.Values{"key": {exampleToken}}, hookgate.EInvalidToken},
		{"wrong form token, right query token", "", "event=X&auth%5Bapplication_token%5D=wrong", url.Values{"auth[application_token]": {exampleToken}}, hookgate.EInvalidToken},
		{"right form token, wrong query token", "", exampleBody, url.Values{"auth[application_token]": {"wrong"}}, ""},
		{"right form token, no query", "", exampleBody, nil, ""},
	}
	for _, tc := range tests {
		p := newProvider(t, bitrix24.Config{TokenParameter: tc.param})
		req := providertest.NewRequest("deals", formType, []byte(tc.body))
		if tc.query != nil {
			req.Query = tc.query
		}
		msg, err := p.Parse(req)
		if err != nil {
			t.Fatalf("Parse(%s) = %v", tc.name, err)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(exampleToken))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func fixtureRequest(a providertest.Args) *providers.Request {
	v := url.Values{
		"event":                   {"ONCRMDEALADD"},
		"event_handler_id":        {"975"},
		"data[FIELDS][ID]":        {strconv.Itoa(7400 + a.Delivery)},
		"data[FIELDS][NOTE]":      {strings.Repeat("a", a.Padding)},
		"ts":                      {strconv.FormatInt(a.Now.Unix(), 10)},
		"auth[domain]":            {"some-domain.bitrix24.com"},
		"auth[member_id]":         {"d897063e1ce7c5eb9f04b9751eef5915"},
		"auth[application_token]": {a.Secret},
	}
	return providertest.NewRequest("conformance", formType, []byte(v.Encode()))
}

func TestConformance(t *testing.T) {
	providertest.Exercise(t, bitrix24.Constructor, providertest.Fixtures{
		Source:  config.Source{Provider: "bitrix24"},
		Request: fixtureRequest,
		StripCredential: func(r *providers.Request) {
			v, _ := url.ParseQuery(string(r.Body))
			v.Del("auth[application_token]")
			r.Body = []byte(v.Encode())
		},
		Malformed: func(a providertest.Args) *providers.Request {
			r := fixtureRequest(a)
			r.Body = append(r.Body, "&data%ZZ=1"...)
			return r
		},
		UnsupportedMedia: "application/json",
		Event:            "ONCRMDEALADD",
		InvalidCode:      hookgate.EInvalidToken,
		Dedup:            true,
	})
}

func FuzzParse(f *testing.F) {
	providertest.Fuzz(f, bitrix24.Constructor, config.Source{Provider: "bitrix24"}, exampleToken,
		providertest.NewRequest("deals", formType, []byte(exampleBody)),
		providertest.NewRequest("deals", formType, []byte("event=ONAPPTEST&auth%5Bapplication_token%5D=x")),
		fixtureRequest(providertest.Args{Secret: exampleToken, Now: providertest.Epoch, Delivery: 1}))
}

func ExampleDedupKey() {
	v, _ := url.ParseQuery("event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=9&ts=1766047124&auth%5Bapplication_token%5D=secret")
	fmt.Println(len(bitrix24.DedupKey(v)))
	// Output: 64
}
