package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// certbot runs Debian's certbot against a CA, with its state in a temporary
// directory and the dev root as its trust anchor.
func certbot(t *testing.T, ca *CA, dir string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("certbot"); err != nil {
		t.Fatal("certbot is missing: apt-get install -y certbot (or run `make deps`)")
	}
	base := []string{"--non-interactive", "--server", ca.DirURL,
		"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs")}
	cmd := exec.Command("certbot", append(append([]string{}, args...), base...)...)
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+ca.RootPEM)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
		t.Fatalf("certbot %s: %v\n%s\n--- certbot log ---\n%s", args[0], err, out, tail(string(logs), 80))
	}
	return string(out)
}

// certbot certonly --standalone: register, two names, http-01 answered by
// certbot's own server, finalize, download; the chain verifies to the dev root.
func TestCertbotStandalone(t *testing.T) {
	ca := NewCA(t)
	dir := t.TempDir()
	names := []string{"certbot.anvil-e2e.com", "www.certbot.anvil-e2e.com"}
	out := certbot(t, ca, dir, "certonly", "--standalone", "--agree-tos", "--register-unsafely-without-email",
		"--http-01-port", strconv.Itoa(ca.HTTPPort), "--http-01-address", "127.0.0.1",
		"-d", names[0], "-d", names[1])
	if !strings.Contains(out, "Successfully received certificate") {
		t.Fatalf("certbot output:\n%s", out)
	}
	fullchain, err := os.ReadFile(filepath.Join(dir, "config", "live", names[0], "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	verifyBundle(t, ca, fullchain, names...)
}
