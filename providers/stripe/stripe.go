// Package stripe is the provider of Stripe-style webhooks:
// Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">, a five-minute
// tolerance, the event in the payload's type and its id as the
// de-duplication key. It is a preset of package hmac, and the worked example
// of docs/providers.md.
package stripe

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/body"
	"github.com/hookgate/hookgate/providers/hmac"
)

// HeaderSignature carries the timestamp and the signatures.
const HeaderSignature = "Stripe-Signature"

// Tolerance is how far t may be from now, either way.
const Tolerance = 5 * time.Minute

// Config configures a Stripe source.
type Config struct {
	Event string // the event name of payloads without "type"; "" means "stripe"
}

// Provider checks and reads Stripe webhook requests.
type Provider struct {
	event    string
	verifier *hmac.Verifier
}

var _ providers.Provider = (*Provider)(nil)

// Scheme: the key is the whole secret ("whsec_..." included), as Stripe
// uses it.
var Scheme = hmac.Scheme{Name: HeaderSignature, Read: read, Tolerance: Tolerance}

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.Event == "" {
		c.Event = "stripe"
	}
	v, err := hmac.New(Scheme)
	if err != nil {
		return nil, err
	}
	return &Provider{event: c.Event, verifier: v}, nil
}

// Constructor builds the provider of a config source.
// Options declares the options of stripe sources: none, so any option set
// on one is reported as unknown.
var Options = providers.Options{}

func Constructor(src config.Source) (providers.Provider, error) {
	if _, err := Options.Parse(src.Options); err != nil {
		return nil, err
	}
	return New(Config{Event: src.Event})
}

// read parses "t=1492774577,v1=5257a8...,v0=6ffbb5..." and signs "t.body".
func read(req *providers.Request) (hmac.Signed, error) {
	var ts string
	var sigs [][]byte
	for _, kv := range strings.Split(req.Header.Get(HeaderSignature), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "t":
			ts = v
		case "v1": // v0 and others are test-mode or older schemes
			if mac, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, mac)
			}
		}
	}
	t, err := hmac.UnixTime(ts)
	if err != nil {
		return hmac.Signed{}, errors.New("missing or bad t= in " + HeaderSignature)
	}
	content := append([]byte(ts+"."), req.Body...)
	return hmac.Signed{Content: content, Signatures: sigs, Timestamp: t}, nil
}

// Sign returns the Stripe-Signature value of payload sent at t.
func Sign(secret string, t time.Time, payload []byte) string {
	v, _ := hmac.New(Scheme)
	ts := strconv.FormatInt(t.Unix(), 10)
	mac, _ := v.Sign(hookgate.Secret(secret), append([]byte(ts+"."), payload...))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac)
}

// Parse reads a JSON body (415 otherwise, 400 when empty or malformed):
// the event is its "type", the de-duplication key its "id".
// Tolerance is how long a signed request stays acceptable: the gateway's
// de-duplication window must be at least as long.
func (p *Provider) Tolerance() time.Duration { return p.verifier.Tolerance() }

func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.JSON)
	if err != nil {
		return nil, err
	}
	f := body.StringFields(d.JSON, "type", "id") // one pass over the body
	event, id := f[0], f[1]
	if event == "" {
		event = p.event
	}
	return &providers.Message{Event: event, Params: body.Params(req.Query, nil), JSON: d.JSON, DedupKey: id}, nil
}

// Verify checks Stripe-Signature against the source's secrets.
func (p *Provider) Verify(ctx context.Context, req *providers.Request, _ *providers.Message, secrets providers.Secrets) error {
	return p.verifier.Verify(ctx, req, secrets)
}
