package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// certbotPython is the interpreter certbot itself runs on (its #! line), so
// that a hook needs nothing certbot does not.
func certbotPython(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("certbot")
	if err != nil {
		t.Fatal("certbot is missing: apt-get install -y certbot (or run `make deps`)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if interp, ok := strings.CutPrefix(strings.TrimSpace(line), "#!"); ok && strings.Contains(interp, "python3") && !strings.Contains(interp, " ") {
		return interp
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("no python3 for the certbot hook")
	}
	return py
}

// dnsHookScript is a certbot manual hook: "add" publishes CERTBOT_VALIDATION
// at _acme-challenge.CERTBOT_DOMAIN in the test's DNS server through its
// control endpoint, "remove" takes it away. Proxies are bypassed: the endpoint
// is on loopback.
const dnsHookScript = `import os, sys, urllib.parse, urllib.request
data = urllib.parse.urlencode({
    "op": sys.argv[1],
    "name": "_acme-challenge." + os.environ["CERTBOT_DOMAIN"],
    "value": os.environ["CERTBOT_VALIDATION"],
}).encode()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(urllib.request.Request(%q, data=data, method="POST"), timeout=10)
`

// certbot gets a certificate for a name and its wildcard by dns-01 through
// manual hooks that publish the TXT records, then revokes it; and revokes a
// certificate lego got, with that certificate's key.
func TestCertbotDNSAndRevoke(t *testing.T) {
	ca := NewCA(t)
	dir := t.TempDir()
	hook := filepath.Join(dir, "dns-hook.py")
	if err := os.WriteFile(hook, fmt.Appendf(nil, dnsHookScript, ca.DNS.ControlURL(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	py := certbotPython(t)
	names := []string{"certbot-dns.anvil-e2e.com", "*.certbot-dns.anvil-e2e.com"}
	live := filepath.Join(dir, "config", "live", names[0])

	t.Run("certonly --manual --preferred-challenges dns", func(t *testing.T) {
		out := certbot(t, ca, dir, "certonly", "--manual", "--preferred-challenges", "dns",
			"--manual-auth-hook", py+" "+hook+" add", "--manual-cleanup-hook", py+" "+hook+" remove",
			"--agree-tos", "--register-unsafely-without-email", "-d", names[0], "-d", names[1])
		if !strings.Contains(out, "Successfully received certificate") {
			t.Fatalf("certbot output:\n%s", out)
		}
		fullchain, err := os.ReadFile(filepath.Join(live, "fullchain.pem"))
		if err != nil {
			t.Fatal(err)
		}
		verifyBundle(t, ca, fullchain, "certbot-dns.anvil-e2e.com", "www.certbot-dns.anvil-e2e.com")
		// The clean-up hook took both records away.
		if left := ca.DNS.TXT("_acme-challenge.certbot-dns.anvil-e2e.com"); len(left) != 0 {
			t.Fatalf("TXT records left after certbot's clean-up: %v", left)
		}
	})

	t.Run("revoke by the account", func(t *testing.T) {
		certPEM, err := os.ReadFile(filepath.Join(live, "cert.pem"))
		if err != nil {
			t.Fatalf("no certificate from the previous subtest: %v", err)
		}
		leaf := leafOf(t, certPEM)
		certbot(t, ca, dir, "revoke", "--cert-path", filepath.Join(live, "cert.pem"), "--reason", "superseded", "--no-delete-after-revoke")
		if st := ca.certStatus(t, leaf); !strings.HasPrefix(st, "revoked at") || !strings.Contains(st, "superseded") {
			t.Fatalf("after certbot revoke the CA says %q", st)
		}
		// Asked again, with the certificate's own key, the server says it
		// is already revoked.
		keyPEM, err := os.ReadFile(filepath.Join(live, "privkey.pem"))
		if err != nil {
			t.Fatal(err)
		}
		k := parseKeyPEM(t, keyPEM)
		if !p256(k) {
			t.Fatalf("certbot made a %T key; the raw client signs with P-256", k)
		}
		st, body, h := newRawClient(t, ca, k).revoke(leaf, -1)
		expectProblem(t, st, body, h, http.StatusBadRequest, "alreadyRevoked")
	})

	t.Run("revoke with the certificate's key", func(t *testing.T) {
		// A certificate lego got, revoked by certbot holding only its key:
		// no account is involved.
		client, user := legoClient(t, ca, newKey(t))
		register(t, client, user)
		res := mustObtain(t, client, obtainReq("certbot-keyrevoke.anvil-e2e.com"))
		keyDir := t.TempDir()
		certPath, keyPath := filepath.Join(keyDir, "cert.pem"), filepath.Join(keyDir, "key.pem")
		if err := os.WriteFile(certPath, res.Certificate, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, res.PrivateKey, 0o600); err != nil {
			t.Fatal(err)
		}
		certbot(t, ca, keyDir, "revoke", "--cert-path", certPath, "--key-path", keyPath, "--reason", "keycompromise", "--no-delete-after-revoke")
		if st := ca.certStatus(t, leafOf(t, res.Certificate)); !strings.Contains(st, "keyCompromise") {
			t.Fatalf("after certbot revoke --key-path the CA says %q", st)
		}
	})
}
