package testenv

import (
	"context"
	"strings"
	"sync"

	"github.com/hookgate/hookgate"
)

// Secrets is a secret store for tests of the gateway and the admin API:
// fixed values by reference, a backend that can be switched off, and a
// Redact that replaces the values it holds.
type Secrets struct {
	mu   sync.Mutex
	vals map[string]string
	down bool
}

// NewSecrets returns a store holding vals (reference → value).
func NewSecrets(vals map[string]string) *Secrets {
	if vals == nil {
		vals = map[string]string{}
	}
	return &Secrets{vals: vals}
}

// Set writes the value of ref.
func (f *Secrets) Set(ref, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals[ref] = v
}

// SetDown switches the backend off (every read is EUnavailable) or on.
func (f *Secrets) SetDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// Secrets returns ref's value: EUnavailable while down, ENotFound when
// the store does not hold it.
func (f *Secrets) Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, hookgate.Errorf(hookgate.EUnavailable, "store down")
	}
	v, ok := f.vals[ref]
	if !ok {
		return nil, hookgate.Errorf(hookgate.ENotFound, "no secret")
	}
	return []hookgate.Secret{hookgate.Secret(v)}, nil
}

// Redact replaces every value the store holds.
func (f *Secrets) Redact(s string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.vals {
		s = strings.ReplaceAll(s, v, hookgate.Redacted)
	}
	return s
}
