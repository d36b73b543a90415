package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"
)

// legoUser is the account a lego client acts for.
type legoUser struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *legoUser) GetEmail() string                           { return "" }
func (u *legoUser) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *legoUser) GetPrivateKey() crypto.Signer               { return u.key }

func newKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// legoClient makes a lego client for an account key, solving http-01 through
// the test's responder on the port the server validates.
func legoClient(t testing.TB, ca *CA, key crypto.Signer, mutate ...func(*lego.Config)) (*lego.Client, *legoUser) {
	t.Helper()
	user := &legoUser{key: key}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = ca.DirURL
	cfg.HTTPClient = ca.HTTPClient()
	for _, m := range mutate {
		m(cfg)
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatalf("lego client: %v", err)
	}
	if err := client.Challenge.SetHTTP01Provider(ca.challengeServer(t)); err != nil {
		t.Fatal(err)
	}
	return client, user
}

func register(t testing.TB, client *lego.Client, user *legoUser) {
	t.Helper()
	reg, err := client.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	user.reg = reg
}

// verifyBundle checks a PEM bundle (leaf then issuer) with x509.Verify against
// the dev root, for each name.
func verifyBundle(t testing.TB, ca *CA, bundle []byte, names ...string) *x509.Certificate {
	t.Helper()
	chain := readChain(t, bundle)
	if len(chain) < 2 {
		t.Fatalf("bundle has %d certificates, want the leaf and its issuer", len(chain))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, n := range names {
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: n, Roots: ca.Roots, Intermediates: inter}); err != nil {
			t.Fatalf("verify %s to the dev root: %v", n, err)
		}
	}
	return chain[0]
}

// lego registers, orders two names, answers http-01 for both, finalizes and
// downloads; the chain verifies to the dev root.
func TestLegoTwoNamesHTTP01(t *testing.T) {
	ca := NewCA(t)
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)

	names := []string{"www.anvil-e2e.com", "anvil-e2e.com"}
	res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	leaf := verifyBundle(t, ca, res.Certificate, names...)
	if len(leaf.DNSNames) != 2 || time.Until(leaf.NotAfter) < 80*24*time.Hour {
		t.Fatalf("leaf: names %v, not after %s", leaf.DNSNames, leaf.NotAfter)
	}
	// The certificate URL is POST-as-GET only (RFC 8555 6.3, 7.4.2): a plain
	// GET is 405 with Allow: POST; lego fetched the chain with POST-as-GET.
	resp, err := ca.HTTPClient().Get(res.CertURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET %s: %d, Allow %q; want 405, Allow: POST", res.CertURL, resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// An RSA certificate key gets a certificate from the RSA intermediate.
func TestLegoRSAKeyFromRSAIssuer(t *testing.T) {
	ca := NewCA(t)
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{"rsa.anvil-e2e.com"}, Bundle: true, KeyType: certcrypto.RSA2048})
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	leaf := verifyBundle(t, ca, res.Certificate, "rsa.anvil-e2e.com")
	if leaf.PublicKeyAlgorithm != x509.RSA || leaf.Issuer.CommonName != "Anvil Development RSA Intermediate R1" {
		t.Fatalf("RSA leaf issued by %q with %s", leaf.Issuer.CommonName, leaf.PublicKeyAlgorithm)
	}
}

// A restart of anvil serve keeps accounts, orders and certificates.
func TestRestartKeepsState(t *testing.T) {
	ca := NewCA(t)
	key := newKey(t)
	rc := newRawClient(t, ca, key)
	rc.register()
	orderURL, order := rc.readyOrder("keep.anvil-e2e.com")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"keep.anvil-e2e.com"}}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	st, body, _ := rc.post(order["finalize"].(string), map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)})
	if st != http.StatusOK || jsonField(t, body, "status") != "valid" {
		t.Fatalf("finalize: %d %s", st, body)
	}
	certURL := jsonField(t, body, "certificate")
	st, certBefore := rc.postAsGet(certURL)
	if st != http.StatusOK {
		t.Fatalf("certificate: %d", st)
	}
	st, body, h := rc.post(rc.url("newOrder"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "later.anvil-e2e.com"}}})
	if st != http.StatusCreated {
		t.Fatalf("second order: %d %s", st, body)
	}
	pendingURL := h.Get("Location")

	ca.Stop()
	ca.Start()

	// The account: lego finds it by its key alone, at the same URL.
	client, user := legoClient(t, ca, key)
	acct, err := client.Registration.ResolveAccountByKey(context.Background())
	if err != nil {
		t.Fatalf("account after restart: %v", err)
	}
	if acct.Location != rc.kid {
		t.Fatalf("account URL %s after restart, was %s", acct.Location, rc.kid)
	}
	user.reg = acct
	// The orders: the valid one still points at its certificate; the pending
	// one is still pending.
	st, body = rc.postAsGet(orderURL)
	if st != http.StatusOK || jsonField(t, body, "status") != "valid" || jsonField(t, body, "certificate") != certURL {
		t.Fatalf("valid order after restart: %d %s", st, body)
	}
	st, body = rc.postAsGet(pendingURL)
	if st != http.StatusOK || jsonField(t, body, "status") != "pending" {
		t.Fatalf("pending order after restart: %d %s", st, body)
	}
	// The certificate: the same bytes.
	st, certAfter := rc.postAsGet(certURL)
	if st != http.StatusOK || string(certAfter) != string(certBefore) {
		t.Fatalf("certificate after restart: %d, same=%v", st, string(certAfter) == string(certBefore))
	}
	// And the server still issues, to the account it remembers.
	res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{"again.anvil-e2e.com"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("obtain after restart: %v", err)
	}
	verifyBundle(t, ca, res.Certificate, "again.anvil-e2e.com")
}
