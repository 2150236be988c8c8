package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hookgate/hookgate/config"
)

// TestSyncDocConfig: the config docs/sync.md walks through is valid.
func TestSyncDocConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/sync.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## The config\n\n```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/sync.md has no ```yaml block under \"## The config\"")
	}
	path := filepath.Join(t.TempDir(), "hookgate.yaml")
	if err := os.WriteFile(path, m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadValid(path, nil, known)
	if err != nil {
		t.Fatalf("docs/sync.md's config: %v", err)
	}
	if len(cfg.Reconcile) != 1 || cfg.Sync.EchoTTLOrDefault() != config.DefaultEchoTTL || len(cfg.Routes) != 3 {
		t.Errorf("docs/sync.md's config read as %+v", cfg)
	}
}
