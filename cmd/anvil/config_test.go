package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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

// The sections `serve` and `signer` share are checked the same way by both:
// a bad value either command would refuse, both refuse, naming the field.
// (The signer once took pki.crl_validity: 30d and log.format: yaml, which
// serve refused, though the signer is the one that publishes CRLs.)
func TestSharedSectionsRefusedByBoth(t *testing.T) {
	commands := []struct {
		name, base string
		cfg        func() config.Validator
	}{
		{"serve", "../../configs/dev/serve.yaml", func() config.Validator { return &serveConfig{} }},
		{"signer", "../../configs/production/signer.yaml", func() config.Validator { return &signerConfig{} }},
	}
	sections := []struct {
		name    string
		section string
		set     map[string]any // keys set in the section, nil values deleted
		want    string
	}{
		{"CRL validity past the Baseline Requirements", "pki", map[string]any{"crl_validity": "30d"}, "pki.crl_validity"},
		{"unknown log format", "log", map[string]any{"format": "yaml"}, "log.format"},
		{"unknown log level", "log", map[string]any{"level": "loud"}, "log.level"},
		{"unknown database driver", "database", map[string]any{"driver": "mysql"}, "database.driver"},
		{"two DSNs", "database", map[string]any{"dsn": "x", "dsn_env": "ANVIL_DSN"}, "database.dsn"},
		{"no DSN", "database", map[string]any{"dsn": nil, "dsn_env": nil}, "database.dsn"},
		{"one HSM session", "hsm", map[string]any{"max_sessions": 1}, "hsm.max_sessions"},
		{"no HSM module", "hsm", map[string]any{"module": nil}, "hsm.module"},
		{"unknown audit sync", "audit", map[string]any{"sync": "sometimes"}, "audit.sync"},
		{"audit without its public key", "audit", map[string]any{"public_key": nil}, "audit.public_key"},
	}
	for _, cmd := range commands {
		base, err := os.ReadFile(cmd.base)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range sections {
			t.Run(cmd.name+"/"+sc.name, func(t *testing.T) {
				var doc map[string]any
				if err := yaml.Unmarshal(base, &doc); err != nil {
					t.Fatal(err)
				}
				sec, _ := doc[sc.section].(map[string]any)
				if sec == nil {
					sec = map[string]any{}
					doc[sc.section] = sec
				}
				for k, v := range sc.set {
					if v == nil {
						delete(sec, k)
					} else {
						sec[k] = v
					}
				}
				out, err := yaml.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, out, 0o600); err != nil {
					t.Fatal(err)
				}
				err = config.Load(path, cmd.cfg())
				if err == nil || !strings.Contains(err.Error(), sc.want) {
					t.Fatalf("%s took a bad %s section: got %v, want an error naming %q", cmd.name, sc.section, err, sc.want)
				}
			})
		}
	}
}
