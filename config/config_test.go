package config_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate/config"
)

var known = config.Known{Providers: []string{"bitrix24", "apikey", "token", "standard", "github"}}

// TestInvalidExamples loads every file of testdata/ and checks that the
// problems reported are exactly its "# want:" lines, all at once.
func TestInvalidExamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		var want []string
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
				want = append(want, w)
			}
		}
		fh.Close()
		_, err = config.LoadValid(f, nil, known)
		var ps config.Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s: err = %v; want config.Problems", f, err)
			continue
		}
		var got []string
		for _, p := range ps {
			got = append(got, p.String())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: problems (-want +got):\n%s", f, diff)
		}
	}
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Bus.Listen != "127.0.0.1:4222" || cfg.Bus.Stream != "HOOKGATE" ||
		cfg.Secrets.Vault.CacheTTL.D() != 30*time.Second || cfg.Server.MaxFormFields != 1000 || len(cfg.Retry.Schedule) != 9 || cfg.Retry.Schedule[8].D() != 72*time.Hour {
		t.Errorf("defaults differ from SPEC.md: %+v", cfg)
	}
}

func TestSampleConfigs(t *testing.T) {
	k := config.Known{Providers: append(known.Providers, "stripe")}
	for _, f := range []string{"../examples/hookgate.yaml", "../examples/hookgate.full.yaml"} {
		if _, err := config.LoadValid(f, nil, k); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	yaml := []byte(`
sources:
  - {id: a, provider: token, secret: a/token}
portals:
  - {id: main, base_url: "https://x.bitrix24.com", user_id: 1, secret: p/s}
`)
	env := []string{
		"HOOKGATE_SERVER_LISTEN=0.0.0.0:9090",
		"HOOKGATE_DATA_DIR=/var/lib/hookgate",
		"HOOKGATE_HISTORY_CLICKHOUSE_ADDR=h1:9000, h2:9000",
		"HOOKGATE_RETRY_SCHEDULE=1s,2s",
		"HOOKGATE_SOURCES_0_SECRET=a/rotated#value",
		"HOOKGATE_PORTALS_0_RATE_PER_SECOND=5",
		"HOOKGATE_SERVER_MAX_BODY_BYTES=2048",
		"HOOKGATE_TEST_SOMETHING=ignored",
		"VAULT_ADDR=http://vault:8200",
		"PATH=/bin",
	}
	cfg, err := config.Parse(yaml, env)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{cfg.Server.Listen, cfg.DataDir, cfg.History.ClickHouse.Addr, cfg.Retry.Schedule[1].D(), cfg.Sources[0].Secret,
		cfg.Portals[0].Rate.PerSecond, cfg.Server.MaxBodyBytes, cfg.Secrets.Vault.Address}
	want := []any{"0.0.0.0:9090", "/var/lib/hookgate", []string{"h1:9000", "h2:9000"}, 2 * time.Second, "a/rotated#value",
		5.0, int64(2048), "http://vault:8200"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overrides (-want +got):\n%s", diff)
	}
	// an optional scalar: unset stays nil, set from the environment is present
	if cfg.Telemetry.SampleRatio != nil {
		t.Errorf("telemetry.sample_ratio = %v without a value; want nil", *cfg.Telemetry.SampleRatio)
	}
	cfg, err = config.Parse(nil, []string{"HOOKGATE_TELEMETRY_SAMPLE_RATIO=0.25", "HOOKGATE_TELEMETRY_ENDPOINT=http://c:4318"})
	if err != nil || cfg.Telemetry.SampleRatio == nil || *cfg.Telemetry.SampleRatio != 0.25 || cfg.Telemetry.Endpoint != "http://c:4318" {
		t.Errorf("telemetry from the environment = %+v, %v; want ratio 0.25 and the endpoint", cfg.Telemetry, err)
	}
	_, err = config.Parse(nil, []string{"HOOKGATE_SERVER_MAX_BODY_BYTES=lots", "HOOKGATE_RETRY_SCHEDULE=1s,never"})
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 2 {
		t.Errorf("bad env values: %v; want 2 problems", err)
	}
}

func TestParseSecretRef(t *testing.T) {
	tests := []struct{ ref, path, field string }{
		{"a/b", "a/b", "token"},
		{"a/b#password", "a/b", "password"},
		{"a#", "a", "token"},
	}
	for _, tc := range tests {
		p, f, err := config.ParseSecretRef(tc.ref)
		if err != nil || p != tc.path || f != tc.field {
			t.Errorf("ParseSecretRef(%q) = %q, %q, %v; want %q, %q", tc.ref, p, f, err, tc.path, tc.field)
		}
	}
	for _, bad := range []string{"", "#x", "/a", "a/", "a//b"} {
		if _, _, err := config.ParseSecretRef(bad); err == nil {
			t.Errorf("ParseSecretRef(%q) accepted", bad)
		}
	}
}

func TestValidateSourceIDLength(t *testing.T) {
	providers := map[string]bool{"token": true}
	ok := config.Source{ID: strings.Repeat("s", config.MaxIDLength), Provider: "token", Secret: "a/b"}
	if ps := config.ValidateSource("s", ok, providers); len(ps) != 0 {
		t.Errorf("ValidateSource(%d-byte id) = %v; want no problem", len(ok.ID), ps)
	}
	long := ok
	long.ID += "s"
	ps := config.ValidateSource("s", long, providers)
	if len(ps) != 1 || ps[0].Path != "s.id" || strings.Contains(ps[0].Message, long.ID) {
		t.Errorf("ValidateSource(%d-byte id) = %v; want one problem at s.id that does not echo the id", len(long.ID), ps)
	}
}

func TestDedupWindowCoversTolerance(t *testing.T) {
	known := config.Known{
		Providers: []string{"standard", "token"},
		Source: func(s config.Source) (time.Duration, config.Problems) {
			if s.Provider == "standard" {
				return 5 * time.Minute, nil
			}
			return 0, nil
		},
	}
	write := func(extra string) string {
		dir := t.TempDir()
		path := filepath.Join(dir, "hookgate.yaml")
		yaml := "data_dir: " + dir + "\nsecrets: {backend: file, file: " + dir + "/s.yaml}\nsources:\n  - {id: billing, provider: standard, secret: b/s}\n  - {id: ci, provider: token, secret: c/t}\n" + extra
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg, err := config.LoadValid(write(""), nil, known)
	if err != nil {
		t.Fatalf("LoadValid without bus.dedup_window = %v", err)
	}
	if got := cfg.Bus.DedupWindow.D(); got != 6*time.Minute {
		t.Errorf("effective bus.dedup_window = %v; want 6m (the 5m tolerance and a minute)", got)
	}
	_, err = config.LoadValid(write("bus: {dedup_window: 2m}\n"), nil, known)
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "bus.dedup_window" || !strings.Contains(ps[0].Message, "sources[0] (billing)") {
		t.Errorf("LoadValid with a 2m window under a 5m tolerance = %v; want one problem at bus.dedup_window naming sources[0]", err)
	}
	if cfg, err := config.LoadValid(write("bus: {dedup_window: 5m}\n"), nil, known); err != nil || cfg.Bus.DedupWindow.D() != 5*time.Minute {
		t.Errorf("LoadValid with a window equal to the tolerance = %v; want it kept", err)
	}
	known.Source = nil
	if cfg, err := config.LoadValid(write(""), nil, known); err != nil || cfg.Bus.DedupWindow.D() != config.DefaultDedupWindow {
		t.Errorf("LoadValid without tolerances = %v; want the default window", err)
	}
}

func TestBusListenBeyondLoopback(t *testing.T) {
	cfg := config.Default()
	cfg.Sources = nil
	cfg.Bus.Listen = "0.0.0.0:4222"
	var ps config.Problems
	if err := cfg.Validate(config.Known{}); !errors.As(err, &ps) || !hasPath(ps, "bus.listen") {
		t.Errorf("Validate(bus.listen 0.0.0.0 without TLS) = %v; want a bus.listen problem", err)
	}
	cfg.Bus.TLS = config.BusTLS{CertFile: "c.pem", KeyFile: "k.pem"}
	if err := cfg.Validate(config.Known{}); errors.As(err, &ps) && hasPath(ps, "bus.listen") {
		t.Errorf("Validate(bus.listen 0.0.0.0 with TLS) = %v; want no bus.listen problem", err)
	}
}

func hasPath(ps config.Problems, path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

// Known's hooks report at full key paths, with the rest of the problems.
func TestValidateKnownHooks(t *testing.T) {
	k := config.Known{
		Providers: known.Providers,
		Source: func(s config.Source) (time.Duration, config.Problems) {
			if s.Options["tolerance"] == "soon" {
				return 0, config.Problems{{Path: "options.tolerance", Message: "want a duration"}, {Message: "whole entry"}}
			}
			return 0, nil
		},
		Routes: func(rs []config.Route) config.Problems {
			return config.Problems{{Path: "routes[0].key", Message: "template parse error"}}
		},
	}
	cfg := config.Default()
	cfg.Sources = []config.Source{
		{ID: "a", Provider: "token", Secret: "a/t"},
		{ID: "b", Provider: "standard", Secret: "b/s", Options: map[string]string{"tolerance": "soon"}},
	}
	var ps config.Problems
	if err := cfg.Validate(k); !errors.As(err, &ps) {
		t.Fatalf("Validate = %v; want Problems", err)
	}
	for _, want := range []string{"sources[1].options.tolerance", "sources[1]", "routes[0].key"} {
		if !hasPath(ps, want) {
			t.Errorf("Validate = %v; want a problem at %s", ps, want)
		}
	}
}
