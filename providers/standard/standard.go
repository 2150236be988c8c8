// Package standard is the provider of Standard Webhooks
// (https://www.standardwebhooks.com): headers webhook-id, webhook-timestamp
// and webhook-signature ("v1,<base64>" entries separated by spaces), an
// HMAC-SHA256 of "id.timestamp.body" keyed by a "whsec_<base64>" secret,
// and a timestamp tolerance. It is a preset of package hmac.
//
// It is also the one home of the format's sending side: Sign and
// DecodeSecret serve outbound/delivery too (a provider package may be
// imported by outbound, never the reverse).
package standard

import (
	"context"
	stdhmac "crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
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

// Header names of the spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the spec's recommended tolerance: five minutes.
const DefaultTolerance = 5 * time.Minute

// DefaultEvent is the event name of a payload without a "type" field when
// the source names none.
const DefaultEvent = "webhook"

// SecretPrefix marks a base64-encoded secret.
const SecretPrefix = "whsec_"

// Config configures a Standard Webhooks source.
type Config struct {
	// Event is the event name of payloads without a string "type" field;
	// "" means DefaultEvent.
	Event string
	// Tolerance is how far webhook-timestamp may be from now, either
	// way; 0 means DefaultTolerance.
	Tolerance time.Duration
}

// Provider checks and reads Standard Webhooks requests.
type Provider struct {
	event    string
	verifier *hmac.Verifier
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.Tolerance < 0 {
		return nil, errors.New("standard: negative tolerance")
	}
	if c.Event == "" {
		c.Event = DefaultEvent
	}
	if c.Tolerance == 0 {
		c.Tolerance = DefaultTolerance
	}
	v, err := hmac.New(Scheme(c.Tolerance))
	if err != nil {
		return nil, err
	}
	return &Provider{event: c.Event, verifier: v}, nil
}

// Options declares the options of standard sources.
var Options = providers.Options{
	{Name: "tolerance", Kind: providers.Duration, Doc: "how far webhook-timestamp may be from now, either way (default 5m)"},
}

// Constructor builds the provider of a config source: its event is the
// default event name; options.tolerance overrides the tolerance.
func Constructor(src config.Source) (providers.Provider, error) {
	opts, err := Options.Parse(src.Options)
	if err != nil {
		return nil, err
	}
	c := Config{Event: src.Event}
	if d, ok := opts.Duration("tolerance"); ok {
		if d < 0 {
			return nil, &providers.OptionError{Option: "tolerance", Err: errors.New("must not be negative")}
		}
		c.Tolerance = d
	}
	return New(c)
}

// Scheme is the Standard Webhooks signature scheme with a tolerance.
func Scheme(tolerance time.Duration) hmac.Scheme {
	return hmac.Scheme{
		Name:      HeaderSignature,
		Read:      read,
		Key:       DecodeSecret,
		Tolerance: tolerance,
	}
}

// DecodeSecret returns the HMAC key of a secret: "whsec_<base64>" is
// base64-decoded, any other value is used as it is. An empty secret is an
// error (the verifier never asks: it skips unset secrets).
func DecodeSecret(s hookgate.Secret) ([]byte, error) {
	v, ok := strings.CutPrefix(s.Reveal(), SecretPrefix)
	if !ok {
		if v == "" {
			return nil, errors.New("standard: empty signing secret")
		}
		return []byte(v), nil
	}
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("standard: secret is not whsec_<base64>")
	}
	return key, nil
}

// signedContent is what the signature covers: "id.timestamp.body".
func signedContent(id, ts string, body []byte) []byte {
	content := make([]byte, 0, len(id)+len(ts)+len(body)+2)
	content = append(content, id...)
	content = append(content, '.')
	content = append(content, ts...)
	content = append(content, '.')
	return append(content, body...)
}

func read(req *providers.Request) (hmac.Signed, error) {
	id := req.Header.Get(HeaderID)
	ts := req.Header.Get(HeaderTimestamp)
	sigs := req.Header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return hmac.Signed{}, errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	t, err := hmac.UnixTime(ts)
	if err != nil {
		return hmac.Signed{}, err
	}
	var list [][]byte
	for _, f := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(f, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a: asymmetric) are not ours
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		list = append(list, b)
	}
	return hmac.Signed{Content: signedContent(id, ts, req.Body), Signatures: list, Timestamp: t}, nil
}

// Sign returns the webhook-signature header value ("v1,<base64>") of a
// message sent with webhook-id id at ts, as a sender computes it: hookgate's
// outbound deliveries and the tests of this provider.
func Sign(secret hookgate.Secret, id string, ts time.Time, payload []byte) (string, error) {
	key, err := DecodeSecret(secret)
	if err != nil {
		return "", err
	}
	mac := stdhmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + Timestamp(ts) + ".")) // signedContent, without copying payload
	mac.Write(payload)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// SignatureMatches reports whether one of the space-separated values of a
// webhook-signature header (sigs) is Sign's value for id, ts and payload,
// compared in constant time; an undecodable secret matches nothing. The
// timestamp's tolerance is the caller's: the platform stand-ins of the
// tools and tests (cmd/receiver, routebench) check deliveries with it.
func SignatureMatches(secret hookgate.Secret, id string, ts time.Time, payload []byte, sigs string) bool {
	want, err := Sign(secret, id, ts, payload)
	if err != nil {
		return false
	}
	for _, got := range strings.Fields(sigs) {
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
			return true
		}
	}
	return false
}

// Timestamp is the webhook-timestamp header value of t: Unix seconds.
func Timestamp(t time.Time) string {
	return strconv.FormatInt(t.Unix(), 10)
}

// Parse reads a JSON body (415 for other media types, 400 when it is empty
// or malformed). The event is the payload's "type" when it is a string,
// else the source's event; the de-duplication key is webhook-id.
// Tolerance is how long a signed request stays acceptable: the gateway's
// de-duplication window must be at least as long.
func (p *Provider) Tolerance() time.Duration { return p.verifier.Tolerance() }

func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.JSON)
	if err != nil {
		return nil, err
	}
	event := p.event
	if t, ok := body.StringField(d.JSON, "type"); ok && t != "" {
		event = t
	}
	return &providers.Message{
		Event:    event,
		Params:   body.Params(req.Query, nil),
		JSON:     d.JSON,
		DedupKey: req.Header.Get(HeaderID),
	}, nil
}

// Verify checks webhook-signature against the source's secrets.
func (p *Provider) Verify(ctx context.Context, req *providers.Request, _ *providers.Message, secrets providers.Secrets) error {
	return p.verifier.Verify(ctx, req, secrets)
}
