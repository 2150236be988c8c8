// Package credential checks a credential presented in a request (a token, an
// API key) against a source's secrets, in constant time. It is the shared
// mechanism of the token-style providers, as package hmac is for the
// signature-style ones.
package credential

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers"
)

// Check reports whether presented equals one of the source's secrets.
//
// An empty presented value is rejected with code (EInvalidToken, say)
// without calling secrets: a missing credential is an answer even when the
// store is down. An error from secrets is returned unchanged (EUnavailable).
// Every secret is compared, each in constant time; the values are hashed
// first so that not even their lengths leak.
func Check(ctx context.Context, secrets providers.Secrets, presented, code, what string) error {
	if presented == "" {
		return hookgate.Errorf(code, "missing %s", what)
	}
	list, err := secrets(ctx)
	if err != nil {
		return err
	}
	if !Match(presented, list) {
		return hookgate.Errorf(code, "wrong %s", what)
	}
	return nil
}

// Match reports whether presented equals one of list, comparing every entry
// in constant time.
func Match(presented string, list []hookgate.Secret) bool {
	p := sha256.Sum256([]byte(presented))
	match := 0
	for _, s := range list {
		if s == "" {
			continue // an unset secret matches nothing, not an empty credential
		}
		h := sha256.Sum256([]byte(s.Reveal()))
		match |= subtle.ConstantTimeCompare(p[:], h[:])
	}
	return match == 1
}
