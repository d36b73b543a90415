// Package systemd holds the systemd units of anvil serve and anvil signer;
// this test checks them with systemd-analyze, as `make test` runs it.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var units = []string{"anvil-serve.service", "anvil-signer.service"}

// shippedExecStart is where the units expect the binary (docs/install.md).
const shippedExecStart = "/usr/local/bin/anvil"

// buildAnvil builds the binary the units start, since systemd-analyze
// refuses a unit whose ExecStart does not exist.
func buildAnvil(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is needed to build anvil for the units: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "anvil")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/anvil-pki/anvil/cmd/anvil")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The units load without a single warning (systemd-analyze only warns about
// a misspelt directive or a bad value, and exits 0), and with an exposure
// score of at most 2.0 of 10 by systemd-analyze security.
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install Debian's systemd package (scripts/deps.sh test)")
	}
	bin := buildAnvil(t)
	dir := t.TempDir()
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			b, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "ExecStart="+shippedExecStart+" ") {
				t.Fatalf("%s: ExecStart does not start %s", u, shippedExecStart)
			}
			// The same unit with ExecStart at the binary just built.
			path := filepath.Join(dir, u)
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "ExecStart="+shippedExecStart, "ExecStart="+bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", path).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
			out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security %s: exposure above 2.0 (%v)\n%s", u, err, out)
			}
		})
	}
}

// The hardening the units promise in docs/install.md is there, whatever
// systemd-analyze scores.
func TestUnitsHardening(t *testing.T) {
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, want := range []string{
			"User=anvil", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
			"PrivateDevices=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
			"SystemCallFilter=@system-service", "StateDirectory=anvil", "UMask=0077", "MemoryDenyWriteExecute=yes",
		} {
			if !lines[want] {
				t.Errorf("%s lacks %q", u, want)
			}
		}
	}
}
