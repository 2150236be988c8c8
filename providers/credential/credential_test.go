package credential_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/providers/credential"
	"github.com/hookgate/hookgate/providers/providertest"
)

func TestCheck(t *testing.T) {
	called := false
	spy := func(ctx context.Context) ([]hookgate.Secret, error) {
		called = true
		return []hookgate.Secret{"s3cret-value"}, nil
	}
	tests := []struct {
		name, presented string
		secrets         providers.Secrets
		want            string
	}{
		{"match", "s3cret-value", providertest.Store("s3cret-value"), ""},
		{"match previous", "s3cret-value", providertest.Store("new-value", "s3cret-value"), ""},
		{"mismatch", "s3cret-valuf", providertest.Store("s3cret-value"), hookgate.EInvalidToken},
		{"prefix", "s3cret", providertest.Store("s3cret-value"), hookgate.EInvalidToken},
		{"empty secret", "x", providertest.Store(""), hookgate.EInvalidToken},
		{"store down", "s3cret-value", providertest.Unavailable(), hookgate.EUnavailable},
		{"missing, store down", "", providertest.Unavailable(), hookgate.EInvalidToken},
	}
	for _, tc := range tests {
		err := credential.Check(context.Background(), tc.secrets, tc.presented, hookgate.EInvalidToken, "token")
		if got := hookgate.ErrorCode(err); got != tc.want {
			t.Errorf("Check(%s) = %v; want code %q", tc.name, err, tc.want)
		}
	}
	if err := credential.Check(context.Background(), spy, "", hookgate.EInvalidToken, "token"); hookgate.ErrorCode(err) != hookgate.EInvalidToken || called {
		t.Errorf("Check(no credential) = %v, secrets read %v; want invalid_token without reading", err, called)
	}
	err := credential.Check(context.Background(), providertest.Unavailable(), "x", hookgate.EInvalidToken, "token")
	if !errors.Is(err, providertest.ErrUnavailable) {
		t.Errorf("Check(store down) = %v; want the store's error", err)
	}
}
