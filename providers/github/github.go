// Package github is the provider of GitHub webhooks: X-Hub-Signature-256
// ("sha256=<hex>", an HMAC-SHA256 of the raw body keyed by the webhook
// secret), the event in X-GitHub-Event and the delivery id in
// X-GitHub-Delivery. It is a preset of package hmac.
package github

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/body"
	"github.com/hookgate/hookgate/providers/hmac"
)

// Header names GitHub sends.
const (
	HeaderSignature = "X-Hub-Signature-256"
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
)

// DefaultEvent is the event name of a request without X-GitHub-Event when
// the source names none.
const DefaultEvent = "github"

// Config configures a GitHub source.
type Config struct {
	// Event is the event name when X-GitHub-Event is missing; "" means
	// DefaultEvent.
	Event string
}

// Provider checks and reads GitHub webhook requests.
type Provider struct {
	event    string
	verifier *hmac.Verifier
}

var _ providers.Provider = (*Provider)(nil)

// Scheme is GitHub's signature scheme: no timestamp, the raw body signed.
var Scheme = hmac.Scheme{
	Name: HeaderSignature,
	Read: read,
}

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.Event == "" {
		c.Event = DefaultEvent
	}
	v, err := hmac.New(Scheme)
	if err != nil {
		return nil, err
	}
	return &Provider{event: c.Event, verifier: v}, nil
}

// Constructor builds the provider of a config source.
// Options declares the options of github sources: none, so any option set
// on one is reported as unknown.
var Options = providers.Options{}

func Constructor(src config.Source) (providers.Provider, error) {
	if _, err := Options.Parse(src.Options); err != nil {
		return nil, err
	}
	return New(Config{Event: src.Event})
}

func read(req *providers.Request) (hmac.Signed, error) {
	v := req.Header.Get(HeaderSignature)
	if v == "" {
		return hmac.Signed{}, errors.New("missing " + HeaderSignature)
	}
	h, ok := strings.CutPrefix(v, "sha256=")
	if !ok {
		return hmac.Signed{}, errors.New(HeaderSignature + " is not sha256=<hex>")
	}
	mac, err := hex.DecodeString(h)
	if err != nil {
		return hmac.Signed{}, errors.New(HeaderSignature + " is not sha256=<hex>")
	}
	return hmac.Signed{Content: req.Body, Signatures: [][]byte{mac}}, nil
}

// Sign returns the X-Hub-Signature-256 value of body, as GitHub computes it.
func Sign(secret string, body []byte) string {
	v, _ := hmac.New(Scheme)
	mac, _ := v.Sign(hookgate.Secret(secret), body)
	return "sha256=" + hex.EncodeToString(mac)
}

// Parse reads a JSON body, or an urlencoded one whose payload field holds
// the JSON (GitHub's two content types); other media types are 415. The
// event is X-GitHub-Event, the de-duplication key X-GitHub-Delivery.
func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.JSON, body.Form)
	if err != nil {
		return nil, err
	}
	doc := d.JSON
	if d.Kind == body.Form {
		payload := d.Fields.Get("payload")
		if payload == "" {
			return nil, hookgate.Errorf(hookgate.EBadRequest, "form body without payload")
		}
		doc = []byte(payload)
		if !json.Valid(doc) {
			return nil, hookgate.Errorf(hookgate.EBadRequest, "payload is not JSON")
		}
	}
	event := req.Header.Get(HeaderEvent)
	if event == "" {
		event = p.event
	}
	return &providers.Message{
		Event:    event,
		Params:   body.Params(req.Query, d.Fields),
		JSON:     doc,
		DedupKey: req.Header.Get(HeaderDelivery),
	}, nil
}

// Verify checks X-Hub-Signature-256 against the source's secrets.
func (p *Provider) Verify(ctx context.Context, req *providers.Request, _ *providers.Message, secrets providers.Secrets) error {
	return p.verifier.Verify(ctx, req, secrets)
}
