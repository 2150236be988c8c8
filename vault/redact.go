package vault

import (
	"cmp"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hookgate/hookgate"
)

// minRedactLen is the shortest value redacted, as in hookgate.Redactor:
// shorter ones would mangle ordinary text and are not secrets worth the name.
const minRedactLen = 4

// redactor replaces known secret values in text. Reads are lock-free: an
// immutable snapshot is rebuilt, under mu, only when a new value is added.
type redactor struct {
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

func newRedactor() *redactor {
	r := &redactor{}
	r.snap.Store(&redactSnapshot{served: map[string]struct{}{}})
	return r
}

// add remembers secret values.
func (r *redactor) add(vals []hookgate.Secret) {
	strs := make([]string, len(vals))
	for i, v := range vals {
		strs[i] = v.Reveal()
	}
	r.addStrings(strs...)
}

func (r *redactor) addStrings(vals ...string) {
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
			pairs = append(pairs, v, hookgate.Redacted)
		}
		snap.replacer = strings.NewReplacer(pairs...)
	}
	r.snap.Store(snap)
}

// knowsAll reports, without the lock, whether every value was added before
// (the common case: a value served again).
func (r *redactor) knowsAll(vals []string) bool {
	served := r.snap.Load().served
	for _, v := range vals {
		if _, ok := served[v]; !ok && len(v) >= minRedactLen {
			return false
		}
	}
	return true
}

func (r *redactor) redact(text string) string {
	s := r.snap.Load()
	if s.replacer != nil {
		return s.replacer.Replace(text)
	}
	// Longest first: a value containing another is redacted whole, as
	// the Replacer's first-listed match at a position would.
	for _, f := range s.forms {
		if strings.Contains(text, f) {
			text = strings.ReplaceAll(text, f, hookgate.Redacted)
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
