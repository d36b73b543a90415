package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"golang.org/x/crypto/ocsp"
)

func opensslCmd(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is missing: apt-get install -y openssl (or run `make deps`)")
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) string {
	t.Helper()
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A certificate issued through ACME and revoked through ACME: openssl ocsp says
// good, then revoked with the reason; the CRL at the certificate's CRL
// distribution point verifies with openssl crl -verify and lists the serial.
func TestRevocationSeenByOpenSSL(t *testing.T) {
	ca := NewCA(t)
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	dir := t.TempDir()
	var leaves []*x509.Certificate
	var issuer *x509.Certificate
	for _, name := range []string{"revoked.anvil-e2e.com", "kept.anvil-e2e.com"} {
		res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		chain := readChain(t, res.Certificate)
		leaves = append(leaves, chain[0])
		issuer = chain[1]
	}
	revoked, kept := leaves[0], leaves[1]
	if len(revoked.OCSPServer) != 1 || len(revoked.CRLDistributionPoints) != 1 {
		t.Fatalf("certificate without AIA OCSP or CRL DP: %v %v", revoked.OCSPServer, revoked.CRLDistributionPoints)
	}
	issuerPEM := writePEM(t, filepath.Join(dir, "issuer.pem"), issuer)
	chainPEM := writePEM(t, filepath.Join(dir, "chain.pem"), issuer)
	rootAndIssuer := filepath.Join(dir, "cafile.pem")
	rootPEM, _ := os.ReadFile(ca.RootPEM)
	os.WriteFile(rootAndIssuer, append(rootPEM, mustRead(t, chainPEM)...), 0o644)
	leafPEM := writePEM(t, filepath.Join(dir, "revoked.pem"), revoked)
	keptPEM := writePEM(t, filepath.Join(dir, "kept.pem"), kept)
	ocspURL := revoked.OCSPServer[0]

	ocspCheck := func(cert string) string {
		return opensslCmd(t, "ocsp", "-issuer", issuerPEM, "-cert", cert, "-url", ocspURL, "-CAfile", ca.RootPEM, "-resp_text")
	}
	out := ocspCheck(leafPEM)
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPEM+": good") {
		t.Fatalf("before revocation:\n%s", out)
	}

	reason := uint(1) // keyCompromise
	if err := client.Certificate.RevokeWithReason(context.Background(), mustRead(t, leafPEM), &reason); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// OCSP: at once.
	out = ocspCheck(leafPEM)
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPEM+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Fatalf("after revocation:\n%s", out)
	}
	t.Logf("openssl ocsp after revocation:\n%s", tail(out, 8))
	if out := ocspCheck(keptPEM); !strings.Contains(out, keptPEM+": good") {
		t.Fatalf("the other certificate:\n%s", out)
	}
	// A serial the CA never issued, under its issuer: the unsigned
	// unauthorized response (RFC 6960 2.3), which costs no HSM signature.
	// openssl reports it as a responder error and exits non-zero.
	raw, _ := exec.Command("openssl", "ocsp", "-issuer", issuerPEM, "-serial", "0x0123456789abcdef", "-url", ocspURL, "-CAfile", ca.RootPEM).CombinedOutput()
	if out := string(raw); !strings.Contains(out, "Responder Error: unauthorized") {
		t.Fatalf("unknown serial:\n%s", out)
	}

	// CRL: within the check interval (2 s here).
	crlPath := filepath.Join(dir, "int.crl")
	serialHex := strings.ToUpper(revoked.SerialNumber.Text(16))
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(revoked.CRLDistributionPoints[0])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if ct := resp.Header.Get("Content-Type"); ct != "application/pkix-crl" {
				t.Fatalf("CRL Content-Type %q", ct)
			}
			os.WriteFile(crlPath, body, 0o644)
			text := opensslCmd(t, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", rootAndIssuer, "-verify", "-noout", "-text")
			if strings.Contains(text, serialHex) {
				if !strings.Contains(text, "verify OK") || !strings.Contains(text, "Key Compromise") || strings.Contains(text, strings.ToUpper(kept.SerialNumber.Text(16))) {
					t.Fatalf("CRL:\n%s", text)
				}
				t.Logf("openssl crl -verify:\n%s", tail(text, 30))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRL did not list %s within 60 s", serialHex)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Revocation by the operator shows in OCSP at once too.
	cmd := exec.Command(anvilBin, "admin", "revoke", "--config", filepath.Join(ca.Dir, "serve.yaml"), "--serial", kept.SerialNumber.Text(16), "--reason", "cessationOfOperation")
	cmd.Dir = ca.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("anvil admin revoke: %v\n%s", err, out)
	}
	if out := ocspCheck(keptPEM); !strings.Contains(out, keptPEM+": revoked") || !strings.Contains(out, "cessationOfOperation") {
		t.Fatalf("after anvil admin revoke:\n%s", out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Requests the responder cannot answer get the RFC 6960 error statuses, and
// the server keeps serving.
func TestOCSPErrorsEndToEnd(t *testing.T) {
	ca := NewCA(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/ocsp", ca.PKIPort)
	post := func(body []byte) []byte {
		resp, err := http.Post(url, "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	if got := post([]byte("\x30\x03garbage")); !bytes.Equal(got, ocsp.MalformedRequestErrorResponse) {
		t.Fatalf("malformed: %x", got)
	}
	// A request about the dev root's own certificate names the root as issuer:
	// the responder answers only for the intermediates.
	root := readChain(t, mustRead(t, ca.RootPEM))[0]
	req, err := ocsp.CreateRequest(root, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := post(req); !bytes.Equal(got, ocsp.UnauthorizedErrorResponse) {
		t.Fatalf("unknown issuer: %x", got)
	}
	// Still serving: the CA certificate and the root CRL at their URLs.
	for _, path := range []string{"/pki/int-ecdsa.der", "/pki/root.der", "/pki/root.crl"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ca.PKIPort, path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
}
