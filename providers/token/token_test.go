package token_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/url"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/providertest"
	"github.com/hookgate/hookgate/providers/token"
)

const secret = "ci-token-5f0e2a9d"

func newProvider(t testing.TB, c token.Config) *token.Provider {
	t.Helper()
	p, err := token.New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return p
}

func multipartBody(t testing.TB, fields ...string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		w.WriteField(fields[i], fields[i+1])
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

// Citeck's own example: a Bitrix24 call relayed with
// authParameter auth[application_token] (reference/bitrix24.md, section 4).
const citeckBody = "event=ONCRMDEALADD&auth%5Bapplication_token%5D=123&data%5BFIELDS%5D%5BID%5D=9"

func TestCiteckExample(t *testing.T) {
	p, err := token.Constructor(config.Source{ID: "bitrix24-webhook", Provider: "token", AuthParameter: "auth[application_token]"})
	if err != nil {
		t.Fatal(err)
	}
	req := providertest.NewRequest("bitrix24-webhook", "application/x-www-form-urlencoded", []byte(citeckBody))
	msg, err := p.Parse(req)
	if err != nil {
		t.Fatalf("Parse(citeck example) = %v", err)
	}
	want := map[string]string{"event": "ONCRMDEALADD", "auth[application_token]": "123", "data[FIELDS][ID]": "9"}
	if fmt.Sprint(msg.Params) != fmt.Sprint(want) {
		t.Errorf("Parse(citeck example).Params = %v; want %v", msg.Params, want)
	}
	if msg.Event != token.DefaultEvent {
		t.Errorf("Parse(citeck example).Event = %q; want %q", msg.Event, token.DefaultEvent)
	}
	if len(msg.Redact) != 1 || msg.Redact[0] != "auth[application_token]" {
		t.Errorf("Parse(citeck example).Redact = %q; want the auth parameter", msg.Redact)
	}
	if err := p.Verify(context.Background(), req, msg, providertest.Store("123")); err != nil {
		t.Errorf("Verify(citeck example) = %v; want nil", err)
	}
}

func TestParseAndVerify(t *testing.T) {
	mpType, mpBody := multipartBody(t, "token", secret, "build", "42")
	tests := []struct {
		name, param, event, query, contentType, body string
		wantEvent, wantParse, wantVerify             string
		wantJSON                                     bool
	}{
		{"query token, json body", "", "", "token=" + secret, "application/json", `{"build":42}`, token.DefaultEvent, "", "", true},
		{"form token", "", "", "", "application/x-www-form-urlencoded", "token=" + secret + "&build=42", token.DefaultEvent, "", "", false},
		{"multipart token", "", "", "", mpType, string(mpBody), token.DefaultEvent, "", "", false},
		{"query before form", "", "", "token=" + secret, "application/x-www-form-urlencoded", "token=wrong-token", token.DefaultEvent, "", "", false},
		{"wrong query token, right form token", "", "", "token=wrong-token", "application/x-www-form-urlencoded", "token=" + secret, token.DefaultEvent, "", hookgate.EInvalidToken, false},
		{"token in a json body is not looked up", "", "", "", "application/json", `{"token":"` + secret + `"}`, token.DefaultEvent, "", hookgate.EInvalidToken, true},
		{"raw text body", "", "ci.build.finished", "token=" + secret, "text/plain", "build 42 finished", "ci.build.finished", "", "", false},
		{"no content type", "", "", "token=" + secret, "", "build 42 finished", token.DefaultEvent, "", "", false},
		{"custom parameter", "key", "", "key=" + secret, "text/plain", "x", token.DefaultEvent, "", "", false},
		{"custom parameter, token under default name", "key", "", "token=" + secret, "text/plain", "x", token.DefaultEvent, "", hookgate.EInvalidToken, false},
		{"wrong token", "", "", "token=nope-nope", "text/plain", "x", token.DefaultEvent, "", hookgate.EInvalidToken, false},
		{"no token", "", "", "", "text/plain", "x", token.DefaultEvent, "", hookgate.EInvalidToken, false},
		{"empty body", "", "", "token=" + secret, "text/plain", "", "", hookgate.EBadRequest, "", false},
		{"malformed json", "", "", "token=" + secret, "application/json", `{"build":`, "", hookgate.EBadRequest, "", false},
		{"malformed form", "", "", "token=" + secret, "application/x-www-form-urlencoded", "a=%zz", "", hookgate.EBadRequest, "", false},
	}
	for _, tc := range tests {
		p := newProvider(t, token.Config{Parameter: tc.param, Event: tc.event})
		req := providertest.NewRequest("ci", tc.contentType, []byte(tc.body))
		req.Query, _ = url.ParseQuery(tc.query)
		msg, err := p.Parse(req)
		if got := hookgate.ErrorCode(err); got != tc.wantParse {
			t.Errorf("Parse(%s) = %v; want code %q", tc.name, err, tc.wantParse)
			continue
		}
		if err != nil {
			continue
		}
		if msg.Event != tc.wantEvent {
			t.Errorf("Parse(%s).Event = %q; want %q", tc.name, msg.Event, tc.wantEvent)
		}
		if (msg.JSON != nil) != tc.wantJSON {
			t.Errorf("Parse(%s).JSON = %s; want JSON %v", tc.name, msg.JSON, tc.wantJSON)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(secret))
		if got := hookgate.ErrorCode(err); got != tc.wantVerify {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.wantVerify)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("Verify(%s) = %q; it shows the token", tc.name, err)
		}
	}
}

func TestConstructor(t *testing.T) {
	if _, err := token.Constructor(config.Source{ID: "ci", AuthParameter: strings.Repeat("p", 300)}); err == nil {
		t.Errorf("Constructor(300-byte auth_parameter) = nil; want an error")
	}
}

// queryRequest carries the token in the query string, formRequest in the
// form body: the suite runs both.
func queryRequest(a providertest.Args) *providers.Request {
	b := fmt.Sprintf(`{"build":%d,"padding":"%s"}`, a.Delivery, strings.Repeat("a", a.Padding))
	r := providertest.NewRequest("conformance", "application/json", []byte(b),
		token.HeaderIdempotencyKey, fmt.Sprintf("build-%d", a.Delivery))
	r.Query.Set("token", a.Secret)
	return r
}

func formRequest(a providertest.Args) *providers.Request {
	v := url.Values{"build": {fmt.Sprint(a.Delivery)}, "padding": {strings.Repeat("a", a.Padding)}, "secret_word": {a.Secret}}
	return providertest.NewRequest("conformance", "application/x-www-form-urlencoded", []byte(v.Encode()))
}

func TestConformance(t *testing.T) {
	t.Run("QueryToken", func(t *testing.T) {
		providertest.Exercise(t, token.Constructor, providertest.Fixtures{
			Source:          config.Source{Provider: "token", Event: "ci.build.finished"},
			Request:         queryRequest,
			StripCredential: func(r *providers.Request) { r.Query.Del("token") },
			Malformed: func(a providertest.Args) *providers.Request {
				r := queryRequest(a)
				r.Body = []byte(`{"build":`)
				return r
			},
			Event:       "ci.build.finished",
			InvalidCode: hookgate.EInvalidToken,
			Dedup:       true,
		})
	})
	t.Run("FormToken", func(t *testing.T) {
		providertest.Exercise(t, token.Constructor, providertest.Fixtures{
			Source:  config.Source{Provider: "token", AuthParameter: "secret_word", MaxBodyBytes: 262144},
			Request: formRequest,
			StripCredential: func(r *providers.Request) {
				v, _ := url.ParseQuery(string(r.Body))
				v.Del("secret_word")
				r.Body = []byte(v.Encode())
			},
			Malformed: func(a providertest.Args) *providers.Request {
				r := formRequest(a)
				r.Body = append(r.Body, "&x=%zz"...)
				return r
			},
			Event:       token.DefaultEvent,
			InvalidCode: hookgate.EInvalidToken,
		})
	})
}

func FuzzParse(f *testing.F) {
	mpType, mpBody := multipartBody(f, "token", secret, "build", "42")
	providertest.Fuzz(f, token.Constructor, config.Source{Provider: "token"}, secret,
		queryRequest(providertest.Args{Secret: secret, Delivery: 1}),
		formRequest(providertest.Args{Secret: secret, Delivery: 1}),
		providertest.NewRequest("ci", mpType, mpBody),
		providertest.NewRequest("ci", "application/x-www-form-urlencoded", []byte(citeckBody)))
}
