// Package token is the provider of Citeck- and PIPEFORCE-style webhooks: a
// token in a named parameter (auth_parameter, default "token") of the query
// string or the form body, any non-empty body, and an event name set by the
// source.
package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/body"
	"github.com/hookgate/hookgate/providers/credential"
)

// Defaults, as Citeck has them.
const (
	DefaultParameter = "token"
	DefaultEvent     = "in-webhook-request"
)

// HeaderIdempotencyKey is the header whose value, when present, is the
// de-duplication key.
const HeaderIdempotencyKey = "Idempotency-Key"

// Config configures a token source.
type Config struct {
	// Parameter names the query or form parameter holding the token;
	// "" means DefaultParameter.
	Parameter string
	// Event is the event name of every call; "" means DefaultEvent.
	Event string
}

// Provider checks and reads token-authenticated requests.
type Provider struct {
	param string
	event string
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.Parameter == "" {
		c.Parameter = DefaultParameter
	}
	if c.Event == "" {
		c.Event = DefaultEvent
	}
	if len(c.Parameter) > 256 {
		return nil, errors.New("token: parameter name longer than 256 bytes")
	}
	return &Provider{param: c.Parameter, event: c.Event}, nil
}

// Constructor builds the provider of a config source: auth_parameter names
// the token parameter, event the event name.
// Options declares the options of token sources: none, so any option set
// on one is reported as unknown.
var Options = providers.Options{}

func Constructor(src config.Source) (providers.Provider, error) {
	if _, err := Options.Parse(src.Options); err != nil {
		return nil, err
	}
	p, err := New(Config{Parameter: src.AuthParameter, Event: src.Event})
	if err != nil {
		return nil, fmt.Errorf("auth_parameter: %w", err)
	}
	return p, nil
}

// Parse takes any non-empty body (400 when empty, as Citeck requires a
// body): JSON is checked and kept as Message.JSON (400 when malformed),
// urlencoded and multipart bodies become parameters, other media types are
// kept raw. The event is the source's; the de-duplication key the
// Idempotency-Key header, if any. The token parameter is marked for
// redaction.
func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.Other)
	if err != nil {
		return nil, err
	}
	return &providers.Message{
		Event:    p.event,
		Params:   body.Params(req.Query, d.Fields),
		JSON:     d.JSON,
		DedupKey: req.Header.Get(HeaderIdempotencyKey),
		Redact:   []string{p.param},
	}, nil
}

// Verify looks the token up in the query string, then in the form body,
// and checks it against the source's secrets in constant time. A missing
// token is EInvalidToken, decided without the secrets.
func (p *Provider) Verify(ctx context.Context, req *providers.Request, msg *providers.Message, secrets providers.Secrets) error {
	tok := req.Query.Get(p.param)
	if tok == "" && msg != nil {
		// The query has none, so a value in Params comes from the form.
		tok = msg.Params[p.param]
	}
	return credential.Check(ctx, secrets, tok, hookgate.EInvalidToken, "token")
}
