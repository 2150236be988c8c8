package standard_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/providertest"
	"github.com/hookgate/hookgate/providers/standard"
)

// The test vector of the Standard Webhooks spec
// (github.com/standard-webhooks/standard-webhooks), produced by the
// reference libraries and cross-checked with Python's hmac module. (A copy
// of it circulated with the MAC's tail altered, "...tmgC2RTjLHmK...":
// that value is not the HMAC of these inputs, and no implementation
// produces it.)
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorRequest() *providers.Request {
	req := providertest.NewRequest("std", "application/json", []byte(vectorPayload),
		standard.HeaderID, vectorID,
		standard.HeaderTimestamp, strconv.Itoa(vectorTimestamp),
		standard.HeaderSignature, vectorSignature)
	req.Now = time.Unix(vectorTimestamp, 0)
	return req
}

func newProvider(t testing.TB, c standard.Config) *standard.Provider {
	t.Helper()
	p, err := standard.New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return p
}

func TestSignMatchesSpecVector(t *testing.T) {
	got, err := standard.Sign(vectorSecret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	if got != vectorSignature {
		t.Errorf("Sign(spec vector) = %q; want %q", got, vectorSignature)
	}
}

// resign signs the vector's request again with the timestamp ts, so that
// only the timestamp can refuse it.
func resign(ts time.Time) func(r *providers.Request) {
	return func(r *providers.Request) {
		sig, err := standard.Sign(hookgate.Secret(vectorSecret), vectorID, ts, []byte(vectorPayload))
		if err != nil {
			panic(err)
		}
		r.Header.(providertest.Header).Set(standard.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		r.Header.(providertest.Header).Set(standard.HeaderSignature, sig)
	}
}

func TestSignRejectsBadSecrets(t *testing.T) {
	for _, secret := range []hookgate.Secret{"whsec_not base64!", ""} {
		if got, err := standard.Sign(secret, vectorID, time.Unix(vectorTimestamp, 0), nil); err == nil {
			t.Errorf("Sign(secret %q) = %q, nil; want an error", secret.Reveal(), got)
		}
	}
	if got, err := standard.Sign("raw-secret", vectorID, time.Unix(vectorTimestamp, 0), nil); err != nil || !strings.HasPrefix(got, "v1,") {
		t.Errorf("Sign(raw secret) = %q, %v; want v1,<base64>", got, err)
	}
}

func TestVerifySpecVector(t *testing.T) {
	flip := func(s string) string { // one byte of the MAC changed
		b := []byte(s)
		b[5] ^= 1
		return string(b)
	}
	tests := []struct {
		name   string
		edit   func(r *providers.Request)
		secret string
		want   string
	}{
		{"vector", func(*providers.Request) {}, vectorSecret, ""},
		{"4m59s later", func(r *providers.Request) { r.Now = r.Now.Add(4*time.Minute + 59*time.Second) }, vectorSecret, ""},
		{"4m59s earlier", func(r *providers.Request) { r.Now = r.Now.Add(-4*time.Minute - 59*time.Second) }, vectorSecret, ""},
		{"among other signatures", func(r *providers.Request) {
			r.Header.(providertest.Header).Set(standard.HeaderSignature, "v1a,abcd v1,bm90IGl0 "+vectorSignature)
		}, vectorSecret, ""},
		{"one byte changed", func(r *providers.Request) {
			r.Header.(providertest.Header).Set(standard.HeaderSignature, flip(vectorSignature))
		}, vectorSecret, hookgate.EInvalidSignature},
		{"body changed", func(r *providers.Request) { r.Body = []byte(`{"test": 2432232315}`) }, vectorSecret, hookgate.EInvalidSignature},
		{"id changed", func(r *providers.Request) { r.Header.(providertest.Header).Set(standard.HeaderID, "msg_other") }, vectorSecret, hookgate.EInvalidSignature},
		{"10 minutes old", func(r *providers.Request) { r.Now = r.Now.Add(10 * time.Minute) }, vectorSecret, hookgate.EInvalidSignature},
		{"10 minutes in the future", func(r *providers.Request) { r.Now = r.Now.Add(-10 * time.Minute) }, vectorSecret, hookgate.EInvalidSignature},
		{"5m01s old", func(r *providers.Request) { r.Now = r.Now.Add(5*time.Minute + time.Second) }, vectorSecret, hookgate.EInvalidSignature},
		{"wrong secret", func(*providers.Request) {}, "whsec_" + strings.Repeat("A", 32), hookgate.EInvalidSignature},
		{"secret without prefix is raw bytes", func(*providers.Request) {}, strings.TrimPrefix(vectorSecret, "whsec_"), hookgate.EInvalidSignature},
		{"bad base64 in secret", func(*providers.Request) {}, "whsec_!!!", hookgate.EInternal},
		{"no webhook-id", func(r *providers.Request) { r.Header.(providertest.Header).Del(standard.HeaderID) }, vectorSecret, hookgate.EInvalidSignature},
		{"no timestamp", func(r *providers.Request) { r.Header.(providertest.Header).Del(standard.HeaderTimestamp) }, vectorSecret, hookgate.EInvalidSignature},
		{"timestamp not a number", func(r *providers.Request) {
			r.Header.(providertest.Header).Set(standard.HeaderTimestamp, "1614265330.0")
		}, vectorSecret, hookgate.EInvalidSignature},
		{"signed 300 years ahead", resign(time.Unix(vectorTimestamp, 0).AddDate(300, 0, 0)), vectorSecret, hookgate.EInvalidSignature},
		{"signed 300 years ago", resign(time.Unix(vectorTimestamp, 0).AddDate(-300, 0, 0)), vectorSecret, hookgate.EInvalidSignature},
		{"timestamp in milliseconds", resign(time.Unix(vectorTimestamp*1000, 0)), vectorSecret, hookgate.EInvalidSignature},
		{"timestamp at the int64 limit", resign(time.Unix(1<<63-1, 0)), vectorSecret, hookgate.EInvalidSignature},
		{"only v1a", func(r *providers.Request) { r.Header.(providertest.Header).Set(standard.HeaderSignature, "v1a,abcd") }, vectorSecret, hookgate.EInvalidSignature},
		{"signature not base64", func(r *providers.Request) { r.Header.(providertest.Header).Set(standard.HeaderSignature, "v1,***") }, vectorSecret, hookgate.EInvalidSignature},
	}
	p := newProvider(t, standard.Config{})
	for _, tc := range tests {
		req := vectorRequest()
		tc.edit(req)
		msg, err := p.Parse(req)
		if err != nil {
			t.Fatalf("Parse(%s) = %v", tc.name, err)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(tc.secret))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, event, contentType, body string
		wantEvent, wantCode            string
	}{
		{"type field", "", "application/json", `{"type":"invoice.paid"}`, "invoice.paid", ""},
		{"no type, default", "", "application/json", `{"test":1}`, standard.DefaultEvent, ""},
		{"no type, source event", "billing", "application/json", `{"test":1}`, "billing", ""},
		{"type not a string", "", "application/json", `{"type":7}`, standard.DefaultEvent, ""},
		{"array body", "", "application/json", `[1,2]`, standard.DefaultEvent, ""},
		{"charset", "", "application/json; charset=utf-8", `{"type":"a"}`, "a", ""},
		{"+json", "", "application/cloudevents+json", `{"type":"a"}`, "a", ""},
		{"form", "", "application/x-www-form-urlencoded", `type=a`, "", hookgate.EUnsupportedMedia},
		{"no content type", "", "", `{"type":"a"}`, "", hookgate.EUnsupportedMedia},
		{"malformed", "", "application/json", `{"type":`, "", hookgate.EBadRequest},
		{"empty", "", "application/json", ``, "", hookgate.EBadRequest},
	}
	for _, tc := range tests {
		p := newProvider(t, standard.Config{Event: tc.event})
		req := vectorRequest()
		req.ContentType = tc.contentType
		req.Body = []byte(tc.body)
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
		if msg.DedupKey != vectorID {
			t.Errorf("Parse(%s).DedupKey = %q; want %q", tc.name, msg.DedupKey, vectorID)
		}
		if string(msg.JSON) != tc.body {
			t.Errorf("Parse(%s).JSON = %s; want %s", tc.name, msg.JSON, tc.body)
		}
	}
}

func TestConstructor(t *testing.T) {
	tests := []struct {
		name    string
		src     config.Source
		wantErr bool
	}{
		{"defaults", config.Source{ID: "s", Provider: "standard"}, false},
		{"tolerance", config.Source{ID: "s", Options: map[string]string{"tolerance": "10m"}}, false},
		{"bad tolerance", config.Source{ID: "s", Options: map[string]string{"tolerance": "soon"}}, true},
		{"negative tolerance", config.Source{ID: "s", Options: map[string]string{"tolerance": "-1m"}}, true},
		{"unknown option", config.Source{ID: "s", Options: map[string]string{"tolerence": "1m"}}, true},
	}
	for _, tc := range tests {
		_, err := standard.Constructor(tc.src)
		if (err != nil) != tc.wantErr {
			t.Errorf("Constructor(%s) = %v; want error %v", tc.name, err, tc.wantErr)
		}
		// an option's problem is reported at its key path
		var oe *providers.OptionError
		if err != nil && (!errors.As(err, &oe) || len(providers.Problems(err)) != 1) {
			t.Errorf("Constructor(%s) = %v; want one *providers.OptionError", tc.name, err)
		}
	}
	// A longer tolerance takes a 9-minute-old request.
	p, err := standard.Constructor(config.Source{ID: "s", Options: map[string]string{"tolerance": "10m"}})
	if err != nil {
		t.Fatal(err)
	}
	req := vectorRequest()
	req.Now = req.Now.Add(9 * time.Minute)
	msg, err := p.Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background(), req, msg, providertest.Store(vectorSecret)); err != nil {
		t.Errorf("Verify(9 minutes old, tolerance 10m) = %v; want nil", err)
	}
}

func fixtureRequest(a providertest.Args) *providers.Request {
	id := fmt.Sprintf("msg_%d", a.Delivery)
	payload := []byte(fmt.Sprintf(`{"type":"invoice.paid","id":"evt_%d","padding":"%s"}`, a.Delivery, strings.Repeat("a", a.Padding)))
	sig, err := standard.Sign(hookgate.Secret(a.Secret), id, a.Now, payload)
	if err != nil {
		panic(err)
	}
	return providertest.NewRequest("conformance", "application/json", payload,
		standard.HeaderID, id,
		standard.HeaderTimestamp, strconv.FormatInt(a.Now.Unix(), 10),
		standard.HeaderSignature, sig)
}

func fixtures() providertest.Fixtures {
	return providertest.Fixtures{
		Source:  config.Source{Provider: "standard"},
		Request: fixtureRequest,
		StripCredential: func(r *providers.Request) {
			r.Header.(providertest.Header).Del(standard.HeaderSignature)
		},
		Malformed: func(a providertest.Args) *providers.Request {
			r := fixtureRequest(a)
			r.Body = []byte(`{"type":"invoice.paid",`)
			return r
		},
		UnsupportedMedia: "text/plain",
		Event:            "invoice.paid",
		InvalidCode:      hookgate.EInvalidSignature,
		Dedup:            true,
		Tolerance:        standard.DefaultTolerance,
	}
}

func TestConformance(t *testing.T) {
	providertest.Exercise(t, standard.Constructor, fixtures())
}

func FuzzParse(f *testing.F) {
	seed := fixtureRequest(providertest.Args{Secret: "fuzz-secret", Now: providertest.Epoch, Delivery: 1})
	providertest.Fuzz(f, standard.Constructor, config.Source{Provider: "standard"}, "fuzz-secret", vectorRequest(), seed)
}

func TestSignatureMatches(t *testing.T) {
	secret := hookgate.Secret("whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	other := hookgate.Secret("whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")))
	ts := time.Unix(1_700_000_000, 0)
	body := []byte(`{"a":1}`)
	sig, err := standard.Sign(secret, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := standard.Sign(other, "msg_1", ts, body)
	for _, tc := range []struct {
		name   string
		secret hookgate.Secret
		id     string
		ts     time.Time
		body   []byte
		sigs   string
		want   bool
	}{
		{"its signature", secret, "msg_1", ts, body, sig, true},
		{"among others", secret, "msg_1", ts, body, wrong + " " + sig, true},
		{"another secret's", secret, "msg_1", ts, body, wrong, false},
		{"another id", secret, "msg_2", ts, body, sig, false},
		{"another second", secret, "msg_1", ts.Add(time.Second), body, sig, false},
		{"another body", secret, "msg_1", ts, []byte(`{"a":2}`), sig, false},
		{"no header", secret, "msg_1", ts, body, "", false},
		{"undecodable secret", hookgate.Secret("whsec_!!"), "msg_1", ts, body, sig, false},
	} {
		if got := standard.SignatureMatches(tc.secret, tc.id, tc.ts, tc.body, tc.sigs); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
