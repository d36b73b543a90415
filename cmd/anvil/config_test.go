package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/config"
)

// The server configurations shipped in configs/ load and validate: a field
// renamed in code and not in the examples fails here, not at an operator's.
func TestShippedConfigsValidate(t *testing.T) {
	for _, tc := range []struct {
		file string
		cfg  config.Validator
	}{
		{"../../configs/dev/serve.yaml", &serveConfig{}},
		{"../../configs/production/frontend.yaml", &serveConfig{}},
		{"../../configs/production/signer.yaml", &signerConfig{}},
	} {
		if err := config.Load(tc.file, tc.cfg); err != nil {
			t.Errorf("%s: %v", tc.file, err)
		}
	}
}

// A misplaced or missing section is refused with its YAML path named.
func TestConfigProblemsNameTheField(t *testing.T) {
	frontend, err := os.ReadFile("../../configs/production/frontend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	signerFile, err := os.ReadFile("../../configs/production/signer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		cfg        config.Validator
		want       string
	}{
		{"front end with an HSM", string(frontend) + "\nhsm:\n  module: /usr/lib/softhsm/libsofthsm2.so\n", &serveConfig{}, "signer: with a signer, hsm"},
		{"front end issuing its own TLS certificate", strings.Replace(string(frontend), "tls:\n", "tls:\n  issue_for: [acme.example.com]\n", 1), &serveConfig{}, "tls.issue_for"},
		{"signer without an allow-list", strings.Replace(string(signerFile), "allowed_clients:\n  - frontend-1.acme.example.com\n  - frontend-2.acme.example.com\n", "", 1), &signerConfig{}, "allowed_clients"},
		{"signer with no client CA", strings.Replace(string(signerFile), "  client_ca: /etc/anvil/tls/deployment-ca.pem\n", "", 1), &signerConfig{}, "tls.client_ca"},
		{"unknown field", strings.Replace(string(signerFile), "issuers:", "isuers:", 1), &signerConfig{}, "isuers"},
		{"two DSNs", strings.Replace(string(signerFile), "dsn_env: ANVIL_DATABASE_DSN", "dsn_env: ANVIL_DATABASE_DSN\n  dsn: postgres://x", 1), &signerConfig{}, "database.dsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := config.Load(path, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
