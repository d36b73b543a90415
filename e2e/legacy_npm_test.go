package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A real ACME v1 client that nobody here wrote: acme-client 1.0.0 from the
// npm registry (publishlab/node-acme-client, "ACMEv1, callback" in its own
// compatibility table; 2.x and later speak RFC 8555), run by Debian's nodejs.
// It sends what v1 clients sent: alg and jwk in both the protected and the
// unprotected header, no url, Content-Type application/json, its nonce from
// HEAD on the directory; it expects 202 from challenges (GET and POST) and a
// DER certificate with Location and Link rel="up".
const (
	npmClient        = "acme-client"
	npmClientVersion = "1.0.0"
)

// npmACMEClient installs acme-client 1.x once into the user's cache
// directory (npm's own cache makes a second machine run offline) and
// returns the directory holding node_modules.
func npmACMEClient(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/deps.sh test (Debian packages nodejs, npm, openssl)", tool)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "anvil-e2e", "npm-"+npmClient+"-"+npmClientVersion)
	pkg := filepath.Join(dir, "node_modules", npmClient, "package.json")
	if b, err := os.ReadFile(pkg); err == nil && strings.Contains(string(b), `"version": "`+npmClientVersion+`"`) {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// --ignore-scripts: nothing of the package runs at install time.
	cmd := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", "--no-save",
		npmClient+"@"+npmClientVersion)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s@%s: %v\n%s", npmClient, npmClientVersion, err, out)
	}
	return dir
}

// npmScript gets a certificate with acme-client's "easy" flow (new-reg,
// new-authz per name, http-01 served by this script on the port the CA
// validates, new-cert, the certificate and its issuer fetched from Location
// and Link up), writes them, then revokes the certificate.
const npmScript = `
'use strict';
const fs = require('fs');
const http = require('http');
const acme = require('acme-client');

const env = process.env;
const answers = {};
const server = http.createServer((req, res) => {
  const token = req.url.replace('/.well-known/acme-challenge/', '');
  if (answers[token] === undefined) { res.statusCode = 404; return res.end(); }
  res.end(answers[token]);
});

function fail(step, err) {
  console.error('FAILED at ' + step + ': ' + (err && err.stack ? err.stack : JSON.stringify(err)));
  process.exit(1);
}

server.listen(Number(env.HTTP_PORT), '127.0.0.1', () => {
  const client = new acme.Client({
    directoryUri: env.DIRECTORY,
    accountKey: fs.readFileSync(env.ACCOUNT_KEY),
    waitForChallengeSettings: { times: 20, interval: 250 },
  });
  client.easy({
    csr: fs.readFileSync(env.CSR),
    email: 'npm-v1@anvil-e2e.com',
    challengeType: 'http-01',
    challengeCreateFn: (keyAuthorization, challenge, domain, cb) => { answers[challenge.token] = keyAuthorization; cb(null); },
    challengeRemoveFn: (challenge, domain, cb) => { delete answers[challenge.token]; cb(null); },
  }, (err, result) => {
    if (err) return fail('easy', err);
    fs.writeFileSync(env.OUT_CERT, result.certificate);
    fs.writeFileSync(env.OUT_ISSUER, result.intermediate);
    client.revokeCertificate(result.certificate, (err) => {
      if (err) return fail('revokeCertificate', err);
      console.log('revoked');
      server.close();
    });
  });
});
`

// TestLegacyNPMClient: acme-client 1.0.0 gets a certificate over the v1 API
// that verifies to the dev root, then revokes it.
func TestLegacyNPMClient(t *testing.T) {
	modules := npmACMEClient(t)
	ca := NewCA(t, withLegacy())
	dir := t.TempDir()
	name := "npm-v1.anvil-e2e.com"

	accountKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	certKey := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, certKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	script := filepath.Join(dir, "v1.js")
	if err := os.WriteFile(script, []byte(npmScript), 0o600); err != nil {
		t.Fatal(err)
	}
	outCert, outIssuer := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "issuer.pem")
	cmd := exec.Command("node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+filepath.Join(modules, "node_modules"),
		"NODE_EXTRA_CA_CERTS="+ca.RootPEM, // the CA's own TLS certificate chains to the dev root
		"DIRECTORY="+ca.BaseURL+v1DirectoryPath,
		"HTTP_PORT="+strconv.Itoa(ca.HTTPPort),
		"ACCOUNT_KEY="+write("account.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(accountKey)),
		"CSR="+write("csr.pem", "CERTIFICATE REQUEST", csr),
		"OUT_CERT="+outCert, "OUT_ISSUER="+outIssuer,
		"NODE_NO_WARNINGS=1",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("acme-client %s: %v\n%s", npmClientVersion, err, out)
	}
	t.Logf("acme-client %s: %s", npmClientVersion, strings.TrimSpace(string(out)))

	readPEM := func(p string) *x509.Certificate {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		certs := readChain(t, b)
		if len(certs) != 1 {
			t.Fatalf("%s holds %d certificates, want 1", p, len(certs))
		}
		return certs[0]
	}
	cert, issuer := readPEM(outCert), readPEM(outIssuer)
	inter := x509.NewCertPool()
	inter.AddCert(issuer)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Roots, Intermediates: inter}); err != nil {
		t.Fatalf("acme-client's certificate does not verify to the dev root: %v", err)
	}
	if st := ca.certStatus(t, cert); !strings.HasPrefix(st, "revoked") {
		t.Fatalf("after acme-client's revokeCertificate the certificate is %q", st)
	}
}
