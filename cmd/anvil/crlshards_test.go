package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/config"
)

// A bad crl_shards is refused with the issuer's field named; a good one loads.
func TestCRLShardsConfig(t *testing.T) {
	signerFile, err := os.ReadFile("../../configs/production/signer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const crlURL = "    crl_url: http://pki.example.com/int-ecdsa-2027.crl\n"
	if !strings.Contains(string(signerFile), crlURL) {
		t.Fatal("signer.yaml lost its crl_url line")
	}
	for _, tc := range []struct {
		name, replace, want string
	}{
		{"sixteen", crlURL + "    crl_shards: 16\n", ""},
		{"too many", crlURL + "    crl_shards: 129\n", "issuers[0].crl_shards: must be between 1 and 128"},
		{"negative", crlURL + "    crl_shards: -2\n", "issuers[0].crl_shards"},
		{"no CRL URL", "    crl_shards: 4\n", "issuers[0].crl_shards: needs crl_url"},
		{"a directory", "    crl_url: http://pki.example.com/crl/\n    crl_shards: 4\n", "issuers[0].crl_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(signerFile), crlURL, tc.replace, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			err := config.Load(path, &signerConfig{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
