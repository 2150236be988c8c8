// Package providers is the contract between the gateway and its provider
// adapters, as database/sql/driver stands apart from database/sql: the
// gateway uses it, each package under providers/ implements it and guards
// it with
//
//	var _ providers.Provider = (*Provider)(nil)
//
// It imports no HTTP server and no outbound client, and neither may a
// provider package.
package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// Provider is what the gateway needs of a provider adapter. One Provider is
// built per source (by a Constructor from the source's config entry), so it
// may hold that source's settings.
//
// The gateway runs the checks in SPEC.md's order: method, source lookup and
// size are its own; then Parse (415, 400), then Verify (401, 503).
//
// Errors are *hookgate.Error values: Parse returns EUnsupportedMedia or
// EBadRequest; Verify returns EInvalidToken or EInvalidSignature when the
// credentials are missing or wrong (an answer, not a failure), and
// EUnavailable when it could not decide because the secrets could not be
// read (the error returned by Secrets, passed through).
type Provider interface {
	// Parse reads the request body and parameters and returns the message
	// the event is built from.
	Parse(req *Request) (*Message, error)
	// Verify checks the request's credentials against the source's secrets.
	// It must compare in constant time and must not fetch secrets before it
	// has found a credential in the request (a missing one is a 401 even
	// when the store is down).
	Verify(ctx context.Context, req *Request, msg *Message, secrets Secrets) error
}

// KeyRouted is implemented by providers whose sources are addressed by their
// secret in the path (POST {base_path}/webhooks/{api_key}, Creatio style)
// rather than by source id.
type KeyRouted interface {
	KeyRouted() bool
}

// Request is what a provider sees of an inbound call. Body and the maps are
// owned by the gateway for the duration of the call: copy what you keep.
type Request struct {
	SourceID    string
	Method      string
	ContentType string     // the Content-Type header, parameters included
	Header      Header     // request headers, canonical or not
	Query       url.Values // the URL's query parameters
	PathKey     string     // the {api_key} path segment for KeyRouted providers
	Body        []byte     // the raw body, at most the source's limit
	Now         time.Time  // the gateway's clock (signature tolerance)
	RemoteAddr  string
}

// Header reads request headers case-insensitively.
type Header interface {
	Get(name string) string
	// Each calls fn for every header, name as received.
	Each(fn func(name, value string))
}

// Message is what a provider extracted from a request.
type Message struct {
	Event    string            // the event name (type of the CloudEvent)
	Params   map[string]string // flat query + form params, bracket keys kept
	JSON     json.RawMessage   // the body when it is JSON; may be Request.Body itself (used within the call only)
	DedupKey string            // stable id of this delivery; "" = none (a random id is used)
	// Redact lists parameter names whose values are credentials, beyond
	// those hookgate.SensitiveName already catches.
	Redact []string
}

// Secrets returns the secret values a credential may match: the current one
// first, then, during a rotation, the previous ones still inside their grace
// period. Its error is a *hookgate.Error with code EUnavailable when the
// store cannot be read.
type Secrets func(ctx context.Context) ([]hookgate.Secret, error)

// Constructor builds the Provider of one source; it validates the source's
// settings up front. It reads sources[i].options with the provider's
// declared Options (Options.Parse) and returns an *OptionError for a
// problem with one option, so that it is reported at its key path.
type Constructor func(src config.Source) (Provider, error)

// Registry maps provider names to constructors. Build it in main, one
// Register line per provider.
type Registry struct {
	constructors map[string]Constructor
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{constructors: map[string]Constructor{}}
}

// Register adds a provider under name. It panics on an empty or duplicate
// name or a nil constructor: registration is wiring, done once in main.
func (r *Registry) Register(name string, c Constructor) {
	if name == "" || c == nil {
		panic("providers: Register with empty name or nil constructor")
	}
	if _, dup := r.constructors[name]; dup {
		panic(fmt.Sprintf("providers: provider %q registered twice", name))
	}
	r.constructors[name] = c
}

// New builds the provider of src.
func (r *Registry) New(src config.Source) (Provider, error) {
	c, ok := r.constructors[src.Provider]
	if !ok {
		return nil, fmt.Errorf("providers: unknown provider %q (forgotten Register line in main?)", src.Provider)
	}
	p, err := c(src)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.ID, err)
	}
	return p, nil
}

// Check builds the provider of src as New does and reports what is wrong
// with src as problems at key paths relative to the source's entry:
// provider for an unknown provider, options.<name> for an option the
// constructor reports (*OptionError), "" for any other constructor error.
// Config validation and the admin API prefix them (sources[2].,
// source.).
func (r *Registry) Check(src config.Source) (Provider, config.Problems) {
	c, ok := r.constructors[src.Provider]
	if !ok {
		return nil, config.Problems{{Path: "provider", Message: fmt.Sprintf("unknown provider %q", src.Provider)}}
	}
	p, err := c(src)
	if err != nil {
		return nil, Problems(err)
	}
	return p, nil
}

// Names lists the registered provider names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.constructors))
	for n := range r.constructors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
