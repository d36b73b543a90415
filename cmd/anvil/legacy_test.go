package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/config"
)

// The legacy section decodes strictly, and simple_https alone is refused
// with its YAML path named.
func TestLegacyConfig(t *testing.T) {
	dev, err := os.ReadFile("../../configs/dev/serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	load := func(extra string) (*serveConfig, error) {
		path := filepath.Join(t.TempDir(), "serve.yaml")
		if err := os.WriteFile(path, append(dev, []byte("\n"+extra)...), 0o600); err != nil {
			t.Fatal(err)
		}
		var c serveConfig
		return &c, config.Load(path, &c)
	}
	c, err := load("legacy:\n  enabled: true\n  simple_https: true\n")
	if err != nil || !c.Legacy.Enabled || !c.Legacy.SimpleHTTPS {
		t.Fatalf("legacy enabled: %v %+v", err, c)
	}
	if c, err := load(""); err != nil || c.Legacy.Enabled {
		t.Fatalf("legacy must be off by default: %v", err)
	}
	for extra, want := range map[string]string{
		"legacy:\n  simple_https: true\n": "legacy.simple_https",
		"legacy:\n  enabeld: true\n":      "enabeld",
	} {
		if _, err := load(extra); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error naming %q", extra, err, want)
		}
	}
}
