package github_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/github"
	"github.com/hookgate/hookgate/providers/providertest"
)

// The example of GitHub's "Validating webhook deliveries" documentation.
const (
	vectorSecret    = "It's a Secret to Everybody"
	vectorPayload   = "Hello, World!"
	vectorSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func newProvider(t testing.TB, c github.Config) *github.Provider {
	t.Helper()
	p, err := github.New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return p
}

func TestSignMatchesDocsVector(t *testing.T) {
	if got := github.Sign(vectorSecret, []byte(vectorPayload)); got != vectorSignature {
		t.Errorf("Sign(docs vector) = %q; want %q", got, vectorSignature)
	}
}

func TestVerify(t *testing.T) {
	p := newProvider(t, github.Config{})
	tests := []struct {
		name, body, signature, secret string
		want                          string
	}{
		{"docs vector", vectorPayload, vectorSignature, vectorSecret, ""},
		{"upper-case hex", vectorPayload, "sha256=" + strings.ToUpper(strings.TrimPrefix(vectorSignature, "sha256=")), vectorSecret, ""},
		{"one byte changed", vectorPayload, strings.Replace(vectorSignature, "7571", "7570", 1), vectorSecret, hookgate.EInvalidSignature},
		{"body changed", "Hello, World?", vectorSignature, vectorSecret, hookgate.EInvalidSignature},
		{"wrong secret", vectorPayload, vectorSignature, "It's no secret", hookgate.EInvalidSignature},
		{"sha1 form", vectorPayload, "sha1=757107ea0eb2509fc211221cce984b8a37570b6d", vectorSecret, hookgate.EInvalidSignature},
		{"no prefix", vectorPayload, strings.TrimPrefix(vectorSignature, "sha256="), vectorSecret, hookgate.EInvalidSignature},
		{"not hex", vectorPayload, "sha256=zz", vectorSecret, hookgate.EInvalidSignature},
		{"truncated", vectorPayload, vectorSignature[:30], vectorSecret, hookgate.EInvalidSignature},
		{"missing", vectorPayload, "", vectorSecret, hookgate.EInvalidSignature},
	}
	for _, tc := range tests {
		req := providertest.NewRequest("gh", "application/json", []byte(tc.body))
		if tc.signature != "" {
			req.Header.(providertest.Header).Set(github.HeaderSignature, tc.signature)
		}
		err := p.Verify(context.Background(), req, nil, providertest.Store(tc.secret))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	form := "payload=" + url.QueryEscape(`{"action":"opened"}`)
	tests := []struct {
		name, contentType, body, eventHeader string
		wantEvent, wantJSON, wantCode        string
	}{
		{"json", "application/json", `{"action":"opened"}`, "pull_request", "pull_request", `{"action":"opened"}`, ""},
		{"form payload", "application/x-www-form-urlencoded", form, "pull_request", "pull_request", `{"action":"opened"}`, ""},
		{"no event header", "application/json", `{}`, "", github.DefaultEvent, `{}`, ""},
		{"form without payload", "application/x-www-form-urlencoded", "a=b", "push", "", "", hookgate.EBadRequest},
		{"form payload not JSON", "application/x-www-form-urlencoded", "payload=%7B", "push", "", "", hookgate.EBadRequest},
		{"malformed json", "application/json", `{"a"`, "push", "", "", hookgate.EBadRequest},
		{"empty", "application/json", ``, "push", "", "", hookgate.EBadRequest},
		{"text", "text/plain", `{}`, "push", "", "", hookgate.EUnsupportedMedia},
		{"multipart", "multipart/form-data; boundary=x", `--x--`, "push", "", "", hookgate.EUnsupportedMedia},
	}
	p := newProvider(t, github.Config{})
	for _, tc := range tests {
		req := providertest.NewRequest("gh", tc.contentType, []byte(tc.body), github.HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		if tc.eventHeader != "" {
			req.Header.(providertest.Header).Set(github.HeaderEvent, tc.eventHeader)
		}
		msg, err := p.Parse(req)
		if got := hookgate.ErrorCode(err); got != tc.wantCode {
			t.Errorf("Parse(%s) = %v; want code %q", tc.name, err, tc.wantCode)
			continue
		}
		if err != nil {
			continue
		}
		if msg.Event != tc.wantEvent || string(msg.JSON) != tc.wantJSON || msg.DedupKey != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
			t.Errorf("Parse(%s) = event %q, json %s, dedup %q; want %q, %s, the delivery id", tc.name, msg.Event, msg.JSON, msg.DedupKey, tc.wantEvent, tc.wantJSON)
		}
	}
}

func fixtureRequest(a providertest.Args) *providers.Request {
	payload := []byte(fmt.Sprintf(`{"action":"opened","number":%d,"padding":"%s"}`, a.Delivery, strings.Repeat("a", a.Padding)))
	return providertest.NewRequest("conformance", "application/json", payload,
		github.HeaderEvent, "pull_request",
		github.HeaderDelivery, fmt.Sprintf("delivery-%d", a.Delivery),
		github.HeaderSignature, github.Sign(a.Secret, payload))
}

func TestConformance(t *testing.T) {
	providertest.Exercise(t, github.Constructor, providertest.Fixtures{
		Source:  config.Source{Provider: "github"},
		Request: fixtureRequest,
		StripCredential: func(r *providers.Request) {
			r.Header.(providertest.Header).Del(github.HeaderSignature)
		},
		Malformed: func(a providertest.Args) *providers.Request {
			r := fixtureRequest(a)
			r.Body = []byte(`{"action":`)
			r.Header.(providertest.Header).Set(github.HeaderSignature, github.Sign(a.Secret, r.Body))
			return r
		},
		UnsupportedMedia: "text/plain",
		Event:            "pull_request",
		InvalidCode:      hookgate.EInvalidSignature,
		Dedup:            true,
	})
}

func FuzzParse(f *testing.F) {
	vector := providertest.NewRequest("gh", "application/json", []byte(vectorPayload), github.HeaderSignature, vectorSignature)
	form := []byte("payload=" + url.QueryEscape(`{"zen":"Keep it simple."}`))
	formReq := providertest.NewRequest("gh", "application/x-www-form-urlencoded", form, github.HeaderSignature, github.Sign(vectorSecret, form), github.HeaderEvent, "ping")
	seed := fixtureRequest(providertest.Args{Secret: vectorSecret, Delivery: 1})
	providertest.Fuzz(f, github.Constructor, config.Source{Provider: "github"}, vectorSecret, vector, formReq, seed)
}
