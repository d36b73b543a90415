package softhsmtest

import (
	"os"
	"strings"
	"testing"
)

func TestTokensStayInTheirOwnDirectory(t *testing.T) {
	systemBefore, _ := os.ReadDir("/var/lib/softhsm/tokens")
	tok := New(t)
	if !strings.HasPrefix(tok.Dir.TokenDir, os.TempDir()) {
		t.Fatalf("token dir %s is not under the temporary directory", tok.Dir.TokenDir)
	}
	if os.Getenv("SOFTHSM2_CONF") != tok.Dir.ConfPath {
		t.Fatalf("SOFTHSM2_CONF=%q, want %q", os.Getenv("SOFTHSM2_CONF"), tok.Dir.ConfPath)
	}
	path, err := tok.TokenPath()
	if err != nil || !strings.HasPrefix(path, tok.Dir.TokenDir) {
		t.Fatalf("token path %q %v", path, err)
	}
	labels, err := tok.Dir.Labels()
	if err != nil || len(labels) != 1 || labels[0] != tok.Label {
		t.Fatalf("labels %v %v", labels, err)
	}
	if _, err := tok.Dir.InitToken(tok.Label); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate label: %v", err)
	}
	second, err := tok.Dir.InitToken("second")
	if err != nil || second.Serial == "" || second.Serial == tok.Serial {
		t.Fatalf("second token: %+v %v", second, err)
	}
	pin, err := os.ReadFile(tok.PINFile)
	if err != nil || strings.TrimSpace(string(pin)) != tok.PIN {
		t.Fatalf("PIN file: %v", err)
	}
	if fi, _ := os.Stat(tok.PINFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("PIN file mode %o", fi.Mode().Perm())
	}
	systemAfter, _ := os.ReadDir("/var/lib/softhsm/tokens")
	if len(systemAfter) != len(systemBefore) {
		t.Fatal("the system token directory changed")
	}
}
