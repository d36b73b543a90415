package softhsmtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// Tokens made through PKCS#11 alone (no softhsm2-util, no PIN in argv) can be
// logged into with the PIN from their 0600 file; a second token goes to
// another slot, and a label used twice is refused.
func TestInitTokenPKCS11(t *testing.T) {
	d, err := softhsmtest.NewPrivateDir(filepath.Join(t.TempDir(), "softhsm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.InitTokenPKCS11("first"); err == nil || !strings.Contains(err.Error(), "SOFTHSM2_CONF") {
		t.Fatalf("without SOFTHSM2_CONF: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", d.ConfPath)
	for _, label := range []string{"first", "second"} {
		tok, err := d.InitTokenPKCS11(label)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(tok.PINFile)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("PIN file %s: %v %v", tok.PINFile, fi, err)
		}
		h, err := hsm.Open(hsm.Config{ModulePath: d.ModulePath, TokenLabel: label, PIN: hsm.PINSource{File: tok.PINFile}})
		if err != nil {
			t.Fatalf("open %s with its PIN file: %v", label, err)
		}
		h.Close()
	}
	if _, err := d.InitTokenPKCS11("first"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second token labelled first: %v", err)
	}
}
