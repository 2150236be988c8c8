// Package bitrix24 is the provider of Bitrix24 outgoing webhooks and event
// handlers: urlencoded POSTs with the fields event, event_handler_id,
// data[...], ts and auth[...], whose auth[application_token] must equal the
// source's secret (reference/bitrix24.md, section 2).
package bitrix24

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/body"
	"github.com/hookgate/hookgate/providers/credential"
)

// DefaultTokenParameter is the form field holding the application token.
const DefaultTokenParameter = "auth[application_token]"

// Config configures a Bitrix24 source.
type Config struct {
	// TokenParameter is the form field holding the token; "" means
	// DefaultTokenParameter.
	TokenParameter string
}

// Provider checks and reads Bitrix24 event calls.
type Provider struct {
	param string
}

var _ providers.Provider = (*Provider)(nil)

// New returns a Provider for c.
func New(c Config) (*Provider, error) {
	if c.TokenParameter == "" {
		c.TokenParameter = DefaultTokenParameter
	}
	return &Provider{param: c.TokenParameter}, nil
}

// Constructor builds the provider of a config source; auth_parameter, when
// set, names the token field.
// Options declares the options of bitrix24 sources: none, so any option set
// on one is reported as unknown.
var Options = providers.Options{}

func Constructor(src config.Source) (providers.Provider, error) {
	if _, err := Options.Parse(src.Options); err != nil {
		return nil, err
	}
	return New(Config{TokenParameter: src.AuthParameter})
}

// Parse reads the urlencoded body (415 for other media types, 400 when it is
// empty, malformed or has no event field). The event is the event field;
// the parameters are the query and form fields, bracket keys kept; the
// de-duplication key is a SHA-256 of the event, the data[...] fields and ts,
// so that a call Bitrix24 queues twice is stored once.
func (p *Provider) Parse(req *providers.Request) (*providers.Message, error) {
	d, err := body.Decode(req.ContentType, req.Body, body.Form)
	if err != nil {
		return nil, err
	}
	event := d.Fields.Get("event")
	if event == "" {
		return nil, hookgate.Errorf(hookgate.EBadRequest, "no event field")
	}
	params := body.Params(req.Query, d.Fields)
	if _, ok := d.Fields[p.param]; !ok {
		// Bitrix24 posts the token in the body (auth[...] of the event
		// call); one in the query string is no credential: query strings
		// end up in proxy and access logs (docs/providers.md)
		delete(params, p.param)
	}
	return &providers.Message{
		Event:    event,
		Params:   params,
		DedupKey: DedupKey(d.Fields),
		Redact:   []string{p.param},
	}, nil
}

// DedupKey returns the hex SHA-256 of a call's event, its data[...] fields
// (sorted by name, every value) and ts, each name and value written with
// its length as a big-endian uint64 before it. The gateway scopes it by
// source.
func DedupKey(fields url.Values) string {
	var keys [32]string // most calls have fewer data[...] fields: no allocation
	data := keys[:0]
	size := 64 + len(fields.Get("event")) + len(fields.Get("ts"))
	for k, vs := range fields {
		if strings.HasPrefix(k, "data[") {
			data = append(data, k)
			for _, v := range vs {
				size += 16 + len(k) + len(v)
			}
		}
	}
	slices.Sort(data)
	// The fields written into one buffer and hashed once: the same bytes
	// as writing them one by one into a hash.Hash, without a copy per
	// field.
	b := make([]byte, 0, size)
	field := func(s string) { // length-prefixed: no two lists of fields collide
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	write := func(k, v string) { field(k); field(v) }
	write("event", fields.Get("event"))
	for _, k := range data {
		for _, v := range fields[k] {
			write(k, v)
		}
	}
	write("ts", fields.Get("ts"))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Verify checks the token form field against the source's secrets, in
// constant time. A missing token is EInvalidToken, decided without the
// secrets; a token in the query string only counts as missing.
func (p *Provider) Verify(ctx context.Context, req *providers.Request, msg *providers.Message, secrets providers.Secrets) error {
	token := ""
	if msg != nil {
		token = msg.Params[p.param]
	}
	return credential.Check(ctx, secrets, token, hookgate.EInvalidToken, p.param)
}
