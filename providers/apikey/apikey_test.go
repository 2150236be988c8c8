package apikey_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/apikey"
	"github.com/hookgate/hookgate/providers/providertest"
)

const key = "b5c2d0f1-8a4e-4f3b-9c6d-7e8f9a0b1c2d"

func newProvider(t testing.TB, c apikey.Config) *apikey.Provider {
	t.Helper()
	p, err := apikey.New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return p
}

// multipartBody returns a multipart/form-data body with fields and one file.
func multipartBody(t testing.TB, fields ...string) (contentType string, b []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("Attachment", "contract.pdf")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("%PDF-1.4 not a field"))
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

func TestKeyRouted(t *testing.T) {
	p, err := apikey.Constructor(config.Source{ID: "landing", Provider: "apikey"})
	if err != nil {
		t.Fatal(err)
	}
	kr, ok := p.(providers.KeyRouted)
	if !ok || !kr.KeyRouted() {
		t.Errorf("apikey provider is not KeyRouted")
	}
}

func TestParse(t *testing.T) {
	mpType, mpBody := multipartBody(t, "EntityName", "Lead", "Name", "Acme", "Name", "second value")
	mpNoEntityType, mpNoEntity := multipartBody(t, "Name", "Acme")
	tests := []struct {
		name, event, contentType, body string
		wantEvent                      string
		wantParams                     map[string]string
		wantJSON                       bool
		wantCode                       string
	}{
		{"json EntityName", "", "application/json", `{"EntityName":"Contact","Name":"Ann"}`, "Contact", map[string]string{"source": "landing"}, true, ""},
		{"json without EntityName", "", "application/json", `{"Name":"Ann"}`, apikey.DefaultEvent, map[string]string{"source": "landing"}, true, ""},
		{"json without EntityName, source event", "lead.new", "application/json", `{"Name":"Ann"}`, "lead.new", map[string]string{"source": "landing"}, true, ""},
		{"json EntityName not a string", "", "application/json", `{"EntityName":3}`, apikey.DefaultEvent, map[string]string{"source": "landing"}, true, ""},
		{"json array", "", "application/json", `[{"EntityName":"Contact"}]`, apikey.DefaultEvent, map[string]string{"source": "landing"}, true, ""},
		{"form", "", "application/x-www-form-urlencoded", "EntityName=Lead&Name=Acme", "Lead", map[string]string{"source": "landing", "EntityName": "Lead", "Name": "Acme"}, false, ""},
		{"multipart, file part left out", "", mpType, string(mpBody), "Lead", map[string]string{"source": "landing", "EntityName": "Lead", "Name": "Acme"}, false, ""},
		{"multipart without EntityName", "deal", mpNoEntityType, string(mpNoEntity), "deal", map[string]string{"source": "landing", "Name": "Acme"}, false, ""},
		{"multipart without boundary", "", "multipart/form-data", string(mpBody), "", nil, false, hookgate.EBadRequest},
		{"multipart truncated", "", mpType, string(mpBody[:len(mpBody)/2]), "", nil, false, hookgate.EBadRequest},
		{"malformed json", "", "application/json", `{"EntityName":`, "", nil, false, hookgate.EBadRequest},
		{"empty", "", "application/json", ``, "", nil, false, hookgate.EBadRequest},
		{"xml", "", "application/xml", `<a/>`, "", nil, false, hookgate.EUnsupportedMedia},
		{"no content type", "", "", `{}`, "", nil, false, hookgate.EUnsupportedMedia},
	}
	for _, tc := range tests {
		p := newProvider(t, apikey.Config{Event: tc.event})
		req := providertest.NewRequest("landing", tc.contentType, []byte(tc.body))
		req.Query.Set("source", "landing")
		msg, err := p.Parse(req)
		if got := hookgate.ErrorCode(err); got != tc.wantCode {
			t.Errorf("Parse(%s) = %v; want code %q", tc.name, err, tc.wantCode)
			continue
		}
		if err != nil {
			continue
		}
		if msg.Event != tc.wantEvent {
			t.Errorf("Parse(%s).Event = %q; want %q", tc.name, msg.Event, tc.wantEvent)
		}
		if fmt.Sprint(msg.Params) != fmt.Sprint(tc.wantParams) {
			t.Errorf("Parse(%s).Params = %v; want %v", tc.name, msg.Params, tc.wantParams)
		}
		if (msg.JSON != nil) != tc.wantJSON {
			t.Errorf("Parse(%s).JSON = %s; want JSON %v", tc.name, msg.JSON, tc.wantJSON)
		}
		if msg.DedupKey != "" {
			t.Errorf("Parse(%s).DedupKey = %q; want \"\" without Idempotency-Key", tc.name, msg.DedupKey)
		}
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name, pathKey string
		secrets       []string
		want          string
	}{
		{"right key", key, []string{key}, ""},
		{"previous key", key, []string{"new-key-1234", key}, ""},
		{"wrong key", "b5c2d0f1-0000-0000-0000-000000000000", []string{key}, hookgate.EInvalidToken},
		{"longer key", key + "x", []string{key}, hookgate.EInvalidToken},
		{"no key", "", []string{key}, hookgate.EInvalidToken},
		{"no secrets", key, nil, hookgate.EInvalidToken},
	}
	p := newProvider(t, apikey.Config{})
	for _, tc := range tests {
		req := providertest.NewRequest("landing", "application/json", []byte(`{}`))
		req.PathKey = tc.pathKey
		msg, err := p.Parse(req)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(tc.secrets...))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("Verify(%s) = %q; it shows the key", tc.name, err)
		}
	}
}

func fixtureRequest(a providertest.Args) *providers.Request {
	b := fmt.Sprintf(`{"EntityName":"Contact","Name":"Contact %d","padding":"%s"}`, a.Delivery, strings.Repeat("a", a.Padding))
	r := providertest.NewRequest("conformance", "application/json", []byte(b),
		apikey.HeaderIdempotencyKey, fmt.Sprintf("delivery-%d", a.Delivery))
	r.PathKey = a.Secret
	return r
}

func TestConformance(t *testing.T) {
	providertest.Exercise(t, apikey.Constructor, providertest.Fixtures{
		Source:          config.Source{Provider: "apikey"},
		Request:         fixtureRequest,
		StripCredential: func(r *providers.Request) { r.PathKey = "" },
		Malformed: func(a providertest.Args) *providers.Request {
			r := fixtureRequest(a)
			r.Body = []byte(`{"EntityName":"Contact",`)
			return r
		},
		UnsupportedMedia: "text/plain",
		Event:            "Contact",
		InvalidCode:      hookgate.EInvalidToken,
		Dedup:            true,
		MaxBodyBytes:     256 << 10,
	})
}

func FuzzParse(f *testing.F) {
	mpType, mpBody := multipartBody(f, "EntityName", "Lead", "Name", "Acme")
	mp := providertest.NewRequest("landing", mpType, mpBody)
	mp.PathKey = key
	form := providertest.NewRequest("landing", "application/x-www-form-urlencoded", []byte("EntityName=Lead&Name=Acme"))
	form.PathKey = key
	providertest.Fuzz(f, apikey.Constructor, config.Source{Provider: "apikey"}, key,
		fixtureRequest(providertest.Args{Secret: key, Delivery: 1}), mp, form)
}
