package signer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/signer"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// mtlsCA makes the software CA of the mutual TLS between front ends and the
// signer (not the HSM CA: these certificates only authenticate processes).
type mtlsCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newMTLSCA(t *testing.T, name string) *mtlsCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	ca := &mtlsCA{dir: t.TempDir(), cert: cert, key: key}
	writePEM(t, ca.path("ca.pem"), "CERTIFICATE", der)
	return ca
}

func (c *mtlsCA) path(name string) string { return filepath.Join(c.dir, name) }

// issue writes name.pem and name.key for a leaf with the given CN and names.
func (c *mtlsCA) issue(t *testing.T, name, cn string, dnsNames []string, ips []net.IP, eku x509.ExtKeyUsage) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: dnsNames, IPAddresses: ips, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, c.path(name+".pem"), "CERTIFICATE", der)
	writePEM(t, c.path(name+".key"), "EC PRIVATE KEY", kder)
	return c.path(name + ".pem"), c.path(name + ".key")
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	url   string
	store *sqlite.Store
	ca    *mtlsCA
	tok   *hsm.Token
	root  *issuancetest.Root
}

// newEnv runs a signer on SoftHSM2 and SQLite, with a policy allowing only
// names under example.com, serving clients named frontend-1 and frontend-2.
func newEnv(t *testing.T) *env {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{ca: newMTLSCA(t, "mtls test CA"), tok: issuancetest.Token(t), root: issuancetest.NewRoot(t)}
	iss := issuancetest.Issuer(t, e.tok, e.root, hsm.ECDSAP256)
	store, err := sqlite.Open(t.TempDir() + "/signer.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	rules, _ := policy.New(policy.Config{AllowedSuffixes: []string{"example.com"}, AllowSpecialUse: []string{"example.com"}})
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{iss},
		Profiles: []*issuance.Profile{issuancetest.Profile(t, "tls", issuance.ProfileConfig{Description: "TLS"})},
		Ledger:   ledger.Issuance{Store: store}, Policy: rules, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := signer.NewServer(signer.ServerConfig{Service: svc, Store: store, AllowedClients: []string{"frontend-1", "frontend-2"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := e.ca.issue(t, "signer", "signer", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	tlsCfg, err := signer.ServerTLS(certFile, keyFile, e.ca.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ErrorLog: nil}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	e.url = "https://" + ln.Addr().String()
	return e
}

func (e *env) client(t *testing.T, cn string) *signer.Client {
	t.Helper()
	cert, key := e.ca.issue(t, cn, cn, nil, nil, x509.ExtKeyUsageClientAuth)
	c, err := signer.NewClient(context.Background(), signer.ClientConfig{URL: e.url, CertFile: cert, KeyFile: key, CAFile: e.ca.path("ca.pem")})
	if err != nil {
		t.Fatalf("client %s: %v", cn, err)
	}
	return c
}

func csr(t *testing.T, names ...string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestIssueThroughSigner(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "frontend-1")
	if p := c.ProfileNames(); len(p) != 1 || p[0].Name != "tls" || p[0].Description != "TLS" {
		t.Fatalf("profiles %+v", p)
	}
	got, err := c.Issue(context.Background(), issuance.Request{CSR: csr(t, "www.example.com"), DNSNames: []string{"www.example.com"}, Requester: "order-1"})
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, der := range got.Chain {
		ic, _ := x509.ParseCertificate(der)
		inter.AddCert(ic)
	}
	if _, err := got.Cert.Verify(x509.VerifyOptions{DNSName: "www.example.com", Roots: e.root.Pool, Intermediates: inter}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	chains, ok := c.Chains(got.Issuer)
	if !ok || len(chains) != 1 || string(chains[0][0]) != string(got.Chain[0]) {
		t.Fatal("Chains does not give the issuer's chain")
	}
}

// The signer checks names against its own policy, whoever asks.
func TestSignerRefusesNamesOutsideItsPolicy(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "frontend-2")
	before := e.tok.Stats().Signs
	_, err := c.Issue(context.Background(), issuance.Request{CSR: csr(t, "evil.org"), DNSNames: []string{"evil.org"}, Requester: "order-evil"})
	if !errors.Is(err, issuance.ErrRejectedName) || !strings.Contains(err.Error(), "outside the domains") {
		t.Fatalf("got %v, want ErrRejectedName", err)
	}
	// Nor does it trust the caller's claim about the names: the CSR must match.
	_, err = c.Issue(context.Background(), issuance.Request{CSR: csr(t, "a.example.com", "evil.org"), DNSNames: []string{"a.example.com"}, Requester: "order-evil-2"})
	if !errors.Is(err, issuance.ErrNamesMismatch) {
		t.Fatalf("got %v, want ErrNamesMismatch", err)
	}
	if e.tok.Stats().Signs != before {
		t.Fatal("a refused request reached the HSM")
	}
}

func TestSignerRefusesUnauthenticatedClients(t *testing.T) {
	e := newEnv(t)
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.cert)
	// No client certificate: the TLS handshake fails.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := plain.Get(e.url + "/v1/info"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	// A certificate from another CA: refused too.
	other := newMTLSCA(t, "other CA")
	cert, key := other.issue(t, "frontend-1", "frontend-1", nil, nil, x509.ExtKeyUsageClientAuth)
	if _, err := signer.NewClient(context.Background(), signer.ClientConfig{URL: e.url, CertFile: cert, KeyFile: key, CAFile: e.ca.path("ca.pem"), Attempts: 1}); err == nil {
		t.Fatal("a client with a certificate from another CA was served")
	}
	// A valid certificate whose identity is not on the allow-list: 403.
	cert, key = e.ca.issue(t, "intruder", "intruder", nil, nil, x509.ExtKeyUsageClientAuth)
	_, err := signer.NewClient(context.Background(), signer.ClientConfig{URL: e.url, CertFile: cert, KeyFile: key, CAFile: e.ca.path("ca.pem"), Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("a client off the allow-list: %v", err)
	}
}

// A request repeated (a retry after a timeout, or two front ends resuming one
// order) never makes a second signature: the signer returns the certificate
// it recorded for that requester.
func TestSignerIsIdempotentPerRequester(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "frontend-1")
	req := issuance.Request{CSR: csr(t, "idem.example.com"), DNSNames: []string{"idem.example.com"}, Requester: "order-idem"}
	before := e.tok.Stats().Signs
	var wg sync.WaitGroup
	serials := make([]string, 10)
	for i := range serials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.Issue(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			serials[i] = got.Cert.SerialNumber.String()
		}()
	}
	wg.Wait()
	for _, s := range serials {
		if s != serials[0] {
			t.Fatalf("one requester got different certificates: %v", serials)
		}
	}
	again, err := c.Issue(context.Background(), req)
	if err != nil || again.Cert.SerialNumber.String() != serials[0] {
		t.Fatalf("a later retry: %v", err)
	}
	if n := e.tok.Stats().Signs - before; n != 1 {
		t.Fatalf("%d HSM signatures for one requester, want 1", n)
	}
}

// The same requester with another key or other names gets no certificate:
// neither the one recorded (it certifies a key the caller may not hold) nor a
// second one (one order, one certificate).
func TestSignerRefusesASecondCSRForARequester(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "frontend-1")
	first, err := c.Issue(context.Background(), issuance.Request{CSR: csr(t, "once.example.com"), DNSNames: []string{"once.example.com"}, Requester: "order-once"})
	if err != nil {
		t.Fatal(err)
	}
	before := e.tok.Stats().Signs
	for name, req := range map[string]issuance.Request{
		"another key": {CSR: csr(t, "once.example.com"), DNSNames: []string{"once.example.com"}, Requester: "order-once"},
		"other names": {CSR: csr(t, "other.example.com"), DNSNames: []string{"other.example.com"}, Requester: "order-once"},
	} {
		got, err := c.Issue(context.Background(), req)
		if !errors.Is(err, issuance.ErrRequesterConflict) {
			t.Errorf("%s: got %v (certificate %v), want ErrRequesterConflict", name, err, got != nil)
		}
	}
	if n := e.tok.Stats().Signs - before; n != 0 {
		t.Fatalf("%d HSM signatures after the first certificate %x, want 0", n, first.Cert.SerialNumber)
	}
}

// While another signer holds a requester's lease (it is issuing for that
// order), this one does not sign: the front end hears that the outcome is
// unknown, and asks again later.
func TestSignerLeavesARequesterToTheSignerHoldingIt(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "frontend-1")
	if ok, err := e.store.TryLease(context.Background(), "issue/order-busy", "another-signer", time.Now(), time.Minute); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	before := e.tok.Stats().Signs
	_, err := c.Issue(context.Background(), issuance.Request{CSR: csr(t, "busy.example.com"), DNSNames: []string{"busy.example.com"}, Requester: "order-busy"})
	if !errors.Is(err, issuance.ErrOutcomeUnknown) {
		t.Fatalf("got %v, want ErrOutcomeUnknown", err)
	}
	if e.tok.Stats().Signs != before {
		t.Fatal("the HSM signed for a requester another signer holds")
	}
}
