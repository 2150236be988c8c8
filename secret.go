package hookgate

import (
	"cmp"
	"encoding/json"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// minRedactLen is the shortest value redacted: shorter ones would mangle
// ordinary text and are not secrets worth the name.
const minRedactLen = 4

// Redactor replaces known secret values in text: each value and the forms
// it takes inside URLs (query- and path-escaped) and JSON strings (with and
// without HTML escaping), the longest first, so that a value containing
// another is redacted whole. Values shorter than 4 bytes are ignored. The
// zero value is not ready: use NewRedactor. It is safe for concurrent use;
// reads are lock-free: an immutable snapshot is rebuilt, under mu, only
// when a new value is added.
//
// It is the one redactor of hookgate: the secret store, the outbound
// client and the gateway's request view all use it.
type Redactor struct {
	snap atomic.Pointer[redactSnapshot]

	mu sync.Mutex
}

// redactSnapshot is never modified once stored.
type redactSnapshot struct {
	served map[string]struct{} // values added
	forms  []string            // values and their encodings, longest first
	// replacer replaces forms in one pass when there are too many of them
	// to look for one by one (nil otherwise).
	replacer *strings.Replacer
}

// maxScanForms is the number of forms up to which redact looks for each
// with strings.Contains (vectorised, no allocation when none occurs: the
// common case for most text) rather than running a strings.Replacer over
// every byte. Above it, one Replacer pass is cheaper.
const maxScanForms = 64

// NewRedactor returns a Redactor for values.
func NewRedactor(values ...string) *Redactor {
	r := &Redactor{}
	r.snap.Store(&redactSnapshot{served: map[string]struct{}{}})
	r.Add(values...)
	return r
}

// AddSecrets adds secret values.
func (r *Redactor) AddSecrets(vals []Secret) {
	strs := make([]string, len(vals))
	for i, v := range vals {
		strs[i] = v.Reveal()
	}
	r.Add(strs...)
}

// Add adds secret values to redact.
func (r *Redactor) Add(vals ...string) {
	if r.knowsAll(vals) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	served := maps.Clone(old.served)
	for _, v := range vals {
		if len(v) >= minRedactLen {
			served[v] = struct{}{}
		}
	}
	if len(served) == len(old.served) {
		return
	}
	known := map[string]struct{}{}
	for v := range served {
		for _, f := range forms(v) {
			known[f] = struct{}{}
		}
	}
	olds := make([]string, 0, len(known))
	for v := range known {
		olds = append(olds, v)
	}
	// At one position the replacer takes the first listed match: longest
	// first, so that a value containing another is redacted whole.
	slices.SortFunc(olds, func(a, b string) int {
		if c := cmp.Compare(len(b), len(a)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	snap := &redactSnapshot{served: served, forms: olds}
	if len(olds) > maxScanForms {
		pairs := make([]string, 0, 2*len(olds))
		for _, v := range olds {
			pairs = append(pairs, v, Redacted)
		}
		snap.replacer = strings.NewReplacer(pairs...)
	}
	r.snap.Store(snap)
}

// knowsAll reports, without the lock, whether every value was added before
// (the common case: a value served again).
func (r *Redactor) knowsAll(vals []string) bool {
	served := r.snap.Load().served
	for _, v := range vals {
		if _, ok := served[v]; !ok && len(v) >= minRedactLen {
			return false
		}
	}
	return true
}

// Redact returns text with every known secret value, in each of its forms,
// replaced by "[redacted]". A nil Redactor returns text as it is.
func (r *Redactor) Redact(text string) string {
	if r == nil {
		return text
	}
	s := r.snap.Load()
	if s.replacer != nil {
		return s.replacer.Replace(text)
	}
	// Longest first: a value containing another is redacted whole, as
	// the Replacer's first-listed match at a position would.
	for _, f := range s.forms {
		if strings.Contains(text, f) {
			text = strings.ReplaceAll(text, f, Redacted)
		}
	}
	return text
}

// forms lists v and the forms it takes inside URLs, forms and JSON strings.
func forms(v string) []string {
	out := []string{v}
	add := func(f string) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	add(url.QueryEscape(v))
	add(url.PathEscape(v))
	if b, err := json.Marshal(v); err == nil {
		add(string(b[1 : len(b)-1])) // HTML-safe escaping, as encoding/json writes
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err == nil {
		s := strings.TrimSuffix(b.String(), "\n")
		add(s[1 : len(s)-1])
	}
	return out
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
