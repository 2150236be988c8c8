package hookgate

import (
	"log/slog"
	"strings"
)

// Redacted is what a secret value is replaced with wherever it would appear.
const Redacted = "[redacted]"

// Secret is a secret value that will not print: fmt, slog and encoding/json
// all show "[redacted]". Reveal returns the value for the one place that
// needs it (a comparison, a signature, a URL about to be sent).
type Secret string

func (s Secret) String() string   { return Redacted }
func (s Secret) GoString() string { return Redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// Redactor replaces known secret values in text. The zero value redacts
// nothing. Values shorter than 4 bytes are ignored: replacing them would
// mangle ordinary text and they are not secrets worth the name.
type Redactor struct {
	values []string
}

// NewRedactor returns a Redactor for values (and their common encodings).
func NewRedactor(values ...string) *Redactor {
	r := &Redactor{}
	r.Add(values...)
	return r
}

// Add adds secret values to redact.
func (r *Redactor) Add(values ...string) {
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		r.values = appendUnique(r.values, v)
		for _, enc := range encodings(v) {
			r.values = appendUnique(r.values, enc)
		}
	}
}

// Redact returns s with every known secret value replaced by "[redacted]".
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, v := range r.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// encodings lists forms a value takes inside URLs, forms and JSON.
func encodings(v string) []string {
	var out []string
	if q := queryEscape(v); q != v {
		out = append(out, q)
	}
	if j := strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`); j != v {
		out = append(out, j)
	}
	return out
}

func queryEscape(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}

// SensitiveName reports whether a parameter or header name looks like it
// carries a credential (token, secret, password, signature, api key,
// authorization, cookie). Such values are redacted whatever they hold.
func SensitiveName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range sensitiveWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

var sensitiveWords = []string{"token", "secret", "password", "passwd", "signature", "api_key", "apikey", "api-key", "authorization", "cookie"}
