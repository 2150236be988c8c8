// Package hmac is the shared mechanism of the signature-style providers:
// an HMAC over content read from the request, compared in constant time
// against every secret of the source, with an optional timestamp tolerance.
//
// A provider is a Scheme — where the signature and the signed content are
// found, how a secret becomes a key, how far the clock may drift — over
// this one Verifier, the way convoy's verifier builds its GitHub preset
// from a generic HMAC one. Packages standard, github and stripe are such
// presets.
package hmac

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash"
	"strconv"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers"
)

// Signed is what a Scheme reads from a request.
type Signed struct {
	Content    []byte    // the bytes the sender signed
	Signatures [][]byte  // the candidate MACs, decoded; any one may match
	Timestamp  time.Time // when the sender signed; zero when the scheme has none
}

// Scheme describes one signature format.
type Scheme struct {
	// Name names the credential in answers ("webhook-signature").
	Name string
	// Hash is the MAC's hash; nil means SHA-256.
	Hash func() hash.Hash
	// Read finds the signatures and the signed content. An error means
	// the request carries no usable signature: it is answered 401 and
	// the secrets are not read. Its text is shown to the caller, so it
	// must not quote the request.
	Read func(req *providers.Request) (Signed, error)
	// Key turns a secret value into the MAC key; nil means its bytes.
	Key func(hookgate.Secret) ([]byte, error)
	// Tolerance is how far Signed.Timestamp may be from the request's
	// Now, either way. Zero means no timestamp check.
	Tolerance time.Duration
}

// Verifier checks requests against one Scheme.
type Verifier struct {
	s Scheme
}

// New returns a Verifier for s.
func New(s Scheme) (*Verifier, error) {
	if s.Read == nil {
		return nil, errors.New("hmac: scheme has no Read")
	}
	if s.Tolerance < 0 {
		return nil, errors.New("hmac: negative tolerance")
	}
	if s.Name == "" {
		s.Name = "signature"
	}
	if s.Hash == nil {
		s.Hash = sha256.New
	}
	if s.Key == nil {
		s.Key = func(sec hookgate.Secret) ([]byte, error) { return []byte(sec.Reveal()), nil }
	}
	return &Verifier{s: s}, nil
}

// Verify checks req's signature. It answers EInvalidSignature when the
// signature is missing, malformed or outside the tolerance (decided before
// the secrets are read), or wrong. An error from secrets
// is returned unchanged (EUnavailable). When no secret matched and a secret
// could not be turned into a key, the error is EInternal: the source is
// misconfigured, and that is not the caller's fault.
func (v *Verifier) Verify(ctx context.Context, req *providers.Request, secrets providers.Secrets) error {
	signed, err := v.s.Read(req)
	if err != nil {
		return hookgate.WrapError(hookgate.EInvalidSignature, "missing or malformed "+v.s.Name, err)
	}
	if len(signed.Signatures) == 0 {
		return hookgate.Errorf(hookgate.EInvalidSignature, "missing %s", v.s.Name)
	}
	if v.s.Tolerance > 0 {
		if signed.Timestamp.IsZero() {
			return hookgate.Errorf(hookgate.EInvalidSignature, "missing timestamp")
		}
		now := req.Now
		if now.IsZero() {
			now = time.Now()
		}
		// In whole seconds, without a subtraction that can overflow: a
		// time.Duration holds 292 years, and a timestamp further off
		// (or one given in milliseconds) would wrap round into range.
		ts, cur, tol := signed.Timestamp.Unix(), now.Unix(), int64(v.s.Tolerance/time.Second)
		if ts < cur-tol {
			return hookgate.Errorf(hookgate.EInvalidSignature, "timestamp too old")
		}
		if ts > cur+tol {
			return hookgate.Errorf(hookgate.EInvalidSignature, "timestamp too new")
		}
	}
	list, err := secrets(ctx)
	if err != nil {
		return err
	}
	match, badKey := false, false
	for _, sec := range list {
		if sec == "" {
			continue
		}
		key, err := v.s.Key(sec)
		if err != nil {
			badKey = true
			continue
		}
		want := v.mac(key, signed.Content)
		for _, got := range signed.Signatures {
			if hmac.Equal(want, got) {
				match = true
			}
		}
	}
	switch {
	case match:
		return nil
	case badKey:
		return hookgate.Errorf(hookgate.EInternal, "a secret of this source is not a valid %s key", v.s.Name)
	}
	return hookgate.Errorf(hookgate.EInvalidSignature, "wrong %s", v.s.Name)
}

// Sign returns the MAC of content under secret, as a sender computes it.
// Tests and fixtures use it; so can an outbound signer.
func (v *Verifier) Sign(secret hookgate.Secret, content []byte) ([]byte, error) {
	key, err := v.s.Key(secret)
	if err != nil {
		return nil, err
	}
	return v.mac(key, content), nil
}

func (v *Verifier) mac(key, content []byte) []byte {
	m := hmac.New(v.s.Hash, key)
	m.Write(content)
	return m.Sum(nil)
}

// UnixTime parses a decimal Unix time in seconds, as the timestamp headers
// of Standard Webhooks and Stripe carry it.
func UnixTime(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, errors.New("timestamp is not a Unix time")
	}
	return time.Unix(n, 0), nil
}

// Tolerance is how far a signed timestamp may be from now, either way; 0
// when the scheme has no timestamp.
func (v *Verifier) Tolerance() time.Duration { return v.s.Tolerance }
