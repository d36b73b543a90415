package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// The audit section is decoded strictly and each problem names its field.
func TestAuditConfigProblemsNameTheField(t *testing.T) {
	signerFile, err := os.ReadFile("../../configs/production/signer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(signerFile)
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad sync", strings.Replace(s, "  sync: always\n", "  sync: sometimes\n", 1), `audit.sync: "sometimes"`},
		{"no key", strings.Replace(s, "  key: \"pkcs11:token=example-online;object=example-audit-signer\"\n", "", 1), "audit.key: is required"},
		{"bad key URI", strings.Replace(s, "key: \"pkcs11:token=example-online;object=example-audit-signer\"", "key: \"token=example-online\"", 1), "audit.key: pkcs11 uri"},
		{"no public key", strings.Replace(s, "  public_key: /etc/anvil/audit/signer-audit.pub.pem\n", "", 1), "audit.public_key: is required"},
		{"no path", strings.Replace(s, "  path: /var/lib/anvil/audit/signer.jsonl\n", "", 1), "audit.path: is required"},
		{"unknown key", strings.Replace(s, "  sync: always\n", "  sync: always\n  fsync: always\n", 1), `unknown key "fsync"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.yaml == s {
				t.Fatal("the example changed: the case edits nothing")
			}
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := config.Load(path, &signerConfig{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// "{node}" in the path gives each front end of a shared configuration its own
// file, and admin commands their own beside it.
func TestAuditPathPerNode(t *testing.T) {
	ac := auditConfig{Path: "/var/lib/anvil/audit/{node}.jsonl", Node: "frontend-2"}
	if ac.path() != "/var/lib/anvil/audit/frontend-2.jsonl" || ac.adminPath() != "/var/lib/anvil/audit/frontend-2.jsonl.admin" {
		t.Fatalf("path %q, admin path %q", ac.path(), ac.adminPath())
	}
}

// verify with --file and --public-key alone (no configuration, no HSM): a
// clean log is verified, an edited one is refused with its line named.
func TestAuditVerifyCommand(t *testing.T) {
	st := softhsmtest.New(t)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "audit", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath, pubPath := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.pub.pem")
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	l, err := audit.Open(audit.Config{Path: logPath, Signer: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(t.Context(), audit.Event{Type: audit.EABKeyCreated, Data: map[string]any{"eab": "k1"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := admin([]string{"audit", "verify", "--file", logPath, "--public-key", pubPath}, &out); err != nil || !strings.Contains(out.String(), "verified") {
		t.Fatalf("verify a clean log: %v\n%s", err, out.String())
	}
	b, _ := os.ReadFile(logPath)
	os.WriteFile(logPath, bytes.Replace(b, []byte(`"k1"`), []byte(`"k2"`), 1), 0o600)
	err = admin([]string{"audit", "verify", "--file", logPath, "--public-key", pubPath}, &out)
	if err == nil || !strings.Contains(err.Error(), "NOT VERIFIED: line 3: does not chain") {
		t.Fatalf("verify an edited log: %v", err)
	}
}
