package hmac_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/hmac"
	"github.com/hookgate/hookgate/providers/providertest"
)

// A scheme with its signature in X-Sig (hex) and its timestamp in X-Time.
func scheme(tolerance time.Duration) hmac.Scheme {
	return hmac.Scheme{
		Name: "X-Sig",
		Read: func(req *providers.Request) (hmac.Signed, error) {
			mac, err := hex.DecodeString(req.Header.Get("X-Sig"))
			if err != nil || len(mac) == 0 {
				return hmac.Signed{}, errors.New("no X-Sig")
			}
			s := hmac.Signed{Content: req.Body, Signatures: [][]byte{mac}}
			if v := req.Header.Get("X-Time"); v != "" {
				t, err := hmac.UnixTime(v)
				if err != nil {
					return hmac.Signed{}, err
				}
				s.Timestamp = t
			}
			return s, nil
		},
		Tolerance: tolerance,
	}
}

func TestNew(t *testing.T) {
	if _, err := hmac.New(hmac.Scheme{}); err == nil {
		t.Errorf("New(scheme without Read) = nil; want an error")
	}
	if _, err := hmac.New(scheme(-time.Second)); err == nil {
		t.Errorf("New(negative tolerance) = nil; want an error")
	}
}

func TestVerify(t *testing.T) {
	// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
	const rfc4231 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	body := []byte("what do ya want for nothing?")
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		scheme    hmac.Scheme
		sig, time string
		secrets   providers.Secrets
		want      string
	}{
		{"rfc 4231", scheme(0), rfc4231, "", providertest.Store("Jefe"), ""},
		{"second secret", scheme(0), rfc4231, "", providertest.Store("other", "Jefe"), ""},
		{"empty secret skipped", scheme(0), rfc4231, "", providertest.Store(""), hookgate.EInvalidSignature},
		{"wrong secret", scheme(0), rfc4231, "", providertest.Store("jefe"), hookgate.EInvalidSignature},
		{"sha1 scheme", func() hmac.Scheme { s := scheme(0); s.Hash = sha1.New; return s }(), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", "", providertest.Store("Jefe"), ""},
		{"no signature, store down", scheme(0), "", "", providertest.Unavailable(), hookgate.EInvalidSignature},
		{"store down", scheme(0), rfc4231, "", providertest.Unavailable(), hookgate.EUnavailable},
		{"in tolerance", scheme(time.Minute), rfc4231, "1700000059", providertest.Store("Jefe"), ""},
		{"past tolerance, store down", scheme(time.Minute), rfc4231, "1699999939", providertest.Unavailable(), hookgate.EInvalidSignature},
		{"ahead of tolerance", scheme(time.Minute), rfc4231, "1700000061", providertest.Store("Jefe"), hookgate.EInvalidSignature},
		{"tolerance, no timestamp", scheme(time.Minute), rfc4231, "", providertest.Store("Jefe"), hookgate.EInvalidSignature},
		{"bad key", func() hmac.Scheme {
			s := scheme(0)
			s.Key = func(hookgate.Secret) ([]byte, error) { return nil, errors.New("bad") }
			return s
		}(), rfc4231, "", providertest.Store("Jefe"), hookgate.EInternal},
	}
	for _, tc := range tests {
		v, err := hmac.New(tc.scheme)
		if err != nil {
			t.Fatal(err)
		}
		req := providertest.NewRequest("s", "text/plain", body, "X-Sig", tc.sig, "X-Time", tc.time)
		req.Now = now
		err = v.Verify(context.Background(), req, tc.secrets)
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Verify(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
}

func TestUnixTime(t *testing.T) {
	for _, s := range []string{"", "-1", "1.5", "1e9", " 1", "99999999999999999999"} {
		if _, err := hmac.UnixTime(s); err == nil {
			t.Errorf("UnixTime(%q) = nil error; want an error", s)
		}
	}
	if got, err := hmac.UnixTime("1614265330"); err != nil || !got.Equal(time.Unix(1614265330, 0)) {
		t.Errorf("UnixTime(1614265330) = %v, %v", got, err)
	}
}
