package stripe_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/providertest"
	"github.com/hookgate/hookgate/providers/stripe"
)

// A vector computed independently, with Python's hmac module:
//
//	hmac.new(b"whsec_test_secret", b"1700000000." + payload, hashlib.sha256).hexdigest()
const (
	vectorSecret  = "whsec_test_secret"
	vectorPayload = `{"id":"evt_1","type":"payment_intent.succeeded"}`
	vectorHeader  = "t=1700000000,v1=22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31"
)

var vectorTime = time.Unix(1700000000, 0)

func TestSignMatchesVector(t *testing.T) {
	if got := stripe.Sign(vectorSecret, vectorTime, []byte(vectorPayload)); got != vectorHeader {
		t.Errorf("Sign(vector) = %q; want %q", got, vectorHeader)
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name, header string
		now          time.Time
		want         string
	}{
		{"vector", vectorHeader, vectorTime, ""},
		{"with v0 and a second v1", "t=1700000000,v0=abcd,v1=00ff," + strings.TrimPrefix(vectorHeader, "t=1700000000,"), vectorTime, ""},
		{"one byte changed", strings.Replace(vectorHeader, "v1=22", "v1=23", 1), vectorTime, hookgate.EInvalidSignature},
		{"10 minutes old", vectorHeader, vectorTime.Add(10 * time.Minute), hookgate.EInvalidSignature},
		{"no t", strings.TrimPrefix(vectorHeader, "t=1700000000,"), vectorTime, hookgate.EInvalidSignature},
		{"no v1", "t=1700000000", vectorTime, hookgate.EInvalidSignature},
		{"missing", "", vectorTime, hookgate.EInvalidSignature},
	}
	p, err := stripe.New(stripe.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		req := providertest.NewRequest("pay", "application/json", []byte(vectorPayload), stripe.HeaderSignature, tc.header)
		req.Now = tc.now
		msg, err := p.Parse(req)
		if err != nil {
			t.Fatalf("Parse(%s) = %v", tc.name, err)
		}
		if msg.Event != "payment_intent.succeeded" || msg.DedupKey != "evt_1" {
			t.Errorf("Parse(%s) = event %q, dedup %q; want payment_intent.succeeded, evt_1", tc.name, msg.Event, msg.DedupKey)
		}
		err = p.Verify(context.Background(), req, msg, providertest.Store(vectorSecret))
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func fixtureRequest(a providertest.Args) *providers.Request {
	b := []byte(fmt.Sprintf(`{"id":"evt_%d","type":"invoice.paid","padding":"%s"}`, a.Delivery, strings.Repeat("a", a.Padding)))
	return providertest.NewRequest("conformance", "application/json", b, stripe.HeaderSignature, stripe.Sign(a.Secret, a.Now, b))
}

func TestConformance(t *testing.T) {
	providertest.Exercise(t, stripe.Constructor, providertest.Fixtures{
		Source:          config.Source{Provider: "stripe"},
		Request:         fixtureRequest,
		StripCredential: func(r *providers.Request) { r.Header.(providertest.Header).Del(stripe.HeaderSignature) },
		Malformed: func(a providertest.Args) *providers.Request {
			r := fixtureRequest(a)
			r.Body = []byte(`{"id":`)
			return r
		},
		UnsupportedMedia: "application/x-www-form-urlencoded",
		Event:            "invoice.paid",
		InvalidCode:      hookgate.EInvalidSignature,
		Dedup:            true,
		Tolerance:        stripe.Tolerance,
	})
}

func FuzzParse(f *testing.F) {
	vector := providertest.NewRequest("pay", "application/json", []byte(vectorPayload), stripe.HeaderSignature, vectorHeader)
	vector.Now = vectorTime
	providertest.Fuzz(f, stripe.Constructor, config.Source{Provider: "stripe"}, vectorSecret, vector)
}
