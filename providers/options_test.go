package providers_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
)

var testOptions = providers.Options{
	{Name: "tolerance", Kind: providers.Duration},
	{Name: "label", Kind: providers.String},
	{Name: "strict", Kind: providers.Bool},
	{Name: "limit", Kind: providers.Int},
}

func TestOptionsParse(t *testing.T) {
	tests := []struct {
		name  string
		opts  providers.Options
		set   map[string]string
		want  providers.Values
		paths []string // problems of the error, by path
	}{
		{"none set", testOptions, nil, providers.Values{}, nil},
		{"every kind", testOptions,
			map[string]string{"tolerance": "10m", "label": "x", "strict": "true", "limit": "7"},
			providers.Values{"tolerance": 10 * time.Minute, "label": "x", "strict": true, "limit": 7}, nil},
		{"bare seconds", testOptions, map[string]string{"tolerance": "90"}, providers.Values{"tolerance": 90 * time.Second}, nil},
		{"empty is unset", testOptions, map[string]string{"tolerance": ""}, providers.Values{}, nil},
		{"bad values and an unknown name", testOptions,
			map[string]string{"tolerance": "soon", "strict": "maybe", "limit": "1.5", "colour": "red"},
			nil, []string{"options.colour", "options.limit", "options.strict", "options.tolerance"}},
		{"a provider without options", providers.Options{}, map[string]string{"tolerance": "5m"}, nil, []string{"options.tolerance"}},
	}
	for _, tc := range tests {
		got, err := tc.opts.Parse(tc.set)
		var paths []string
		for _, p := range providers.Problems(err) {
			paths = append(paths, p.Path)
		}
		if diff := cmp.Diff(tc.paths, paths); diff != "" {
			t.Errorf("Parse(%s) problems (-want +got):\n%s", tc.name, diff)
		}
		if err == nil {
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%s) values (-want +got):\n%s", tc.name, diff)
			}
		}
	}
}

// An unknown option wraps ErrUnknownOption; no message quotes a value.
func TestOptionsParseErrors(t *testing.T) {
	const val = "s3cr3t-value"
	_, err := testOptions.Parse(map[string]string{"api_token": val, "limit": val})
	var oe *providers.OptionError
	if !errors.As(err, &oe) || !errors.Is(err, providers.ErrUnknownOption) {
		t.Errorf("Parse(unknown) = %v; want an *OptionError wrapping ErrUnknownOption", err)
	}
	for _, p := range providers.Problems(err) {
		if p.Message == "" || strings.Contains(p.Message, val) {
			t.Errorf("problem %v: want a message that does not quote the value", p)
		}
	}
}

func TestProblems(t *testing.T) {
	optErr := &providers.OptionError{Option: "tolerance", Err: errors.New("must not be negative")}
	tests := []struct {
		name string
		err  error
		want config.Problems
	}{
		{"nil", nil, nil},
		{"plain", errors.New("standard: no"), config.Problems{{Message: "standard: no"}}},
		{"option", optErr, config.Problems{{Path: "options.tolerance", Message: "must not be negative"}}},
		{"wrapped option", fmt.Errorf("standard: %w", optErr), config.Problems{{Path: "options.tolerance", Message: "must not be negative"}}},
		{"joined", errors.Join(optErr, errors.New("other")), config.Problems{{Path: "options.tolerance", Message: "must not be negative"}, {Message: "other"}}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, providers.Problems(tc.err)); diff != "" {
			t.Errorf("Problems(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestRegistryCheck(t *testing.T) {
	reg := providers.NewRegistry()
	reg.Register("opts", func(src config.Source) (providers.Provider, error) {
		if _, err := testOptions.Parse(src.Options); err != nil {
			return nil, err
		}
		return nil, nil
	})
	_, ps := reg.Check(config.Source{ID: "a", Provider: "nope"})
	if len(ps) != 1 || ps[0].Path != "provider" {
		t.Errorf("Check(unknown provider) = %v; want one problem at provider", ps)
	}
	_, ps = reg.Check(config.Source{ID: "a", Provider: "opts", Options: map[string]string{"limit": "x"}})
	if got := ps.Under("sources[2]"); len(got) != 1 || got[0].Path != "sources[2].options.limit" {
		t.Errorf("Check(bad option).Under(sources[2]) = %v; want one problem at sources[2].options.limit", got)
	}
}
