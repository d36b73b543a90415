// Package issuancetest builds HSM-backed issuers for tests: a throwaway SoftHSM2
// token, issuer keys generated on it, and issuer certificates signed by a test
// root whose key lives in memory; and MemoryLedger, an issuance.Ledger in
// memory for tests of issuance alone. Only tests import it.
package issuancetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// Root is a test root CA with its key in memory.
type Root struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	Pool *x509.CertPool
}

// NewRoot makes a P-384 root valid from an hour ago for ten years.
func NewRoot(t testing.TB) *Root {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"Anvil Test"}, CommonName: "Anvil Test Root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &Root{Cert: cert, Key: key, Pool: pool}
}

// Intermediate certifies pub as an issuing CA under the root, the way a
// ceremony would: path length 0, serverAuth and clientAuth, keyCertSign and
// cRLSign.
func (r *Root) Intermediate(t testing.TB, cn string, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"Anvil Test"}, CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		IssuingCertificateURL: []string{"http://ca.example/root.der"},
		CRLDistributionPoints: []string{"http://ca.example/root.crl"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, pub, r.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// Token opens a fresh SoftHSM2 token (closed at cleanup).
func Token(t testing.TB, mutate ...func(*hsm.Config)) *hsm.Token {
	t.Helper()
	st := softhsmtest.New(t)
	cfg := hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}}
	for _, m := range mutate {
		m(&cfg)
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("open token: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

// DefaultURLs are the URLs test issuers put in certificates.
var DefaultURLs = issuance.URLs{
	IssuerURL: "http://ca.example/int.der",
	OCSPURL:   "http://ca.example/ocsp",
	CRLURL:    "http://ca.example/int.crl",
}

// Issuer generates a key of alg on tok, certifies it under root, and returns the
// issuer.
func Issuer(t testing.TB, tok *hsm.Token, root *Root, alg hsm.Algorithm) *issuance.Issuer {
	t.Helper()
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "issuer-" + string(alg), Algorithm: alg})
	if err != nil {
		t.Fatalf("generate issuer key: %v", err)
	}
	cert := root.Intermediate(t, "Anvil Test Issuer "+string(alg), key.Public())
	iss, err := issuance.NewIssuer(context.Background(), string(alg), cert, key, DefaultURLs)
	if err != nil {
		t.Fatalf("new issuer: %v", err)
	}
	return iss
}

// Profile returns the default profile, failing the test on error.
func Profile(t testing.TB, name string, c issuance.ProfileConfig) *issuance.Profile {
	t.Helper()
	p, err := issuance.NewProfile(name, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// CSR makes a DER CSR for names with key.
func CSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
