// Package apikey is the provider of Creatio-style webhooks: POST
// {base_path}/webhooks/{api_key}, where the API key in the path is both the
// source's address and its secret. Bodies are JSON, multipart/form-data or
// urlencoded; EntityName in the body names the event.
package apikey

import (
	"context"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/body"
	"github.com/hookgate/hookgate/providers/credential"
)

// DefaultEvent is the event name of a body without EntityName when the
// source names none (Citeck's event type).
const DefaultEvent = "in-webhook-request"

// EntityField is the body field that names the event (Creatio's object).
const EntityField = "EntityName"

// HeaderIdempotencyKey is the header whose value, when present, is the
// de-duplication key.
const HeaderIdempotencyKey = "Idempotency-Key"

// Config configures an API-key source.
type Config struct {
	// Event is the event name of bodies without EntityName; "" means
	// DefaultEvent.
	Event string
}

// Provider checks and reads Creatio-style requests.
type Provider struct {
	event string
}

var (
	_ providers.Provider  = (*Provider)(nil)
	_ providers.KeyRouted = (*Provider)(nil)
)

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.Event == "" {
		c.Event = DefaultEvent
	}
	return &Provider{event: c.Event}, nil
}

// Constructor builds the provider of a config source.
// Options declares the options of apikey sources: none, so any option set
// on one is reported as unknown.
var Options = providers.Options{}

func Constructor(src config.Source) (providers.Provider, error) {
	if _, err := Options.Parse(src.Options); err != nil {
		return nil, err
	}
	return New(Config{Event: src.Event})
}

// KeyRouted reports that sources of this provider are addressed by their
// key: POST {base_path}/webhooks/{api_key}.
func (p *Provider) KeyRouted() bool { return true }

// Parse reads a JSON, multipart/form-data or urlencoded body (415 for other
// media types, 400 when empty or malformed). The event is the body's
// EntityName when it is a non-empty string, else the source's event. The
// parameters are the query and the form fields (multipart: the non-file
// parts). The de-duplication key is the Idempotency-Key header, if any.
func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.JSON, body.Multipart, body.Form)
	if err != nil {
		return nil, err
	}
	event := p.event
	var entity string
	if d.Kind == body.JSON {
		entity, _ = body.StringField(d.JSON, EntityField)
	} else {
		entity = d.Fields.Get(EntityField)
	}
	if entity != "" {
		event = entity
	}
	return &providers.Message{
		Event:    event,
		Params:   body.Params(req.Query, d.Fields),
		JSON:     d.JSON,
		DedupKey: req.Header.Get(HeaderIdempotencyKey),
	}, nil
}

// Verify checks the path's key against the source's secrets, in constant
// time. (The gateway found the source by this key already; Verify makes the
// match constant-time and honours rotation.)
func (p *Provider) Verify(ctx context.Context, req *providers.Request, _ *providers.Message, secrets providers.Secrets) error {
	return credential.Check(ctx, secrets, req.PathKey, hookgate.EInvalidToken, "api key")
}
