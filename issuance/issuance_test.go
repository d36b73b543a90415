package issuance_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
)

type subjectKey struct {
	name string
	key  crypto.Signer
}

func subjectKeys(t *testing.T) []subjectKey {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return []subjectKey{{"P-256", p256}, {"P-384", p384}, {"RSA-2048", r2048}}
}

func newService(t *testing.T, ledger issuance.Ledger, issuers []*issuance.Issuer, profiles ...*issuance.Profile) *issuance.Service {
	t.Helper()
	if len(profiles) == 0 {
		profiles = []*issuance.Profile{issuancetest.Profile(t, "tls", issuance.ProfileConfig{})}
	}
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: issuers, Profiles: profiles, Ledger: ledger})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// Leaf certificates for P-256, P-384 and RSA-2048 CSRs from issuer keys of each
// type on a SoftHSM2 token, verified with x509.Verify against the issuer.
func TestIssueFromHSMIssuers(t *testing.T) {
	tok := issuancetest.Token(t)
	root := issuancetest.NewRoot(t)
	keys := subjectKeys(t)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048} {
		iss := issuancetest.Issuer(t, tok, root, alg)
		ledger := issuancetest.NewMemoryLedger()
		svc := newService(t, ledger, []*issuance.Issuer{iss})
		for _, sk := range keys {
			t.Run(string(alg)+"/"+sk.name, func(t *testing.T) {
				csr := issuancetest.CSR(t, sk.key, &x509.CertificateRequest{
					// None of this may reach the certificate.
					Subject:  pkix.Name{CommonName: "www.example.com", Organization: []string{"Evil Corp"}, Country: []string{"XX"}},
					DNSNames: []string{"www.example.com", "Example.COM"},
					ExtraExtensions: []pkix.Extension{
						{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}, // CA:TRUE
						{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: mustMarshal(t, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}})},
					},
				})
				before := tok.Stats().Signs
				got, err := svc.Issue(context.Background(), issuance.Request{
					CSR: csr, DNSNames: []string{"example.com", "www.example.com"}, Requester: "test",
				})
				if err != nil {
					t.Fatalf("issue: %v", err)
				}
				if tok.Stats().Signs != before+1 {
					t.Errorf("HSM signatures: %d, want exactly one more than %d", tok.Stats().Signs, before)
				}
				c := got.Cert
				inter := x509.NewCertPool()
				inter.AddCert(iss.Certificate())
				for _, name := range []string{"example.com", "www.example.com"} {
					if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: root.Pool, Intermediates: inter}); err != nil {
						t.Fatalf("verify for %s: %v", name, err)
					}
				}
				if err := c.CheckSignatureFrom(iss.Certificate()); err != nil {
					t.Fatalf("signature: %v", err)
				}
				if c.Subject.String() != "" {
					t.Errorf("subject %q: the CSR's subject leaked into the certificate", c.Subject)
				}
				if c.IsCA || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
					t.Errorf("CSR extensions leaked: IsCA=%v EKU=%v", c.IsCA, c.ExtKeyUsage)
				}
				if !c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(sk.key.Public()) {
					t.Error("certificate key is not the CSR key")
				}
				if d := c.NotAfter.Sub(c.NotBefore) + time.Second; d != issuance.DefaultValidity {
					t.Errorf("validity %s, want %s", d, issuance.DefaultValidity)
				}
				if b := c.SerialNumber.Bytes(); len(b) != 17 || c.SerialNumber.Sign() <= 0 {
					t.Errorf("serial %x: want 17 positive octets", c.SerialNumber)
				}
				if len(c.OCSPServer) != 1 || len(c.CRLDistributionPoints) != 1 || len(c.IssuingCertificateURL) != 1 {
					t.Errorf("AIA/CRL DP missing: %v %v %v", c.OCSPServer, c.CRLDistributionPoints, c.IssuingCertificateURL)
				}
				_, isRSA := sk.key.Public().(*rsa.PublicKey)
				if !isRSA && c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
					t.Error("keyEncipherment on an ECDSA certificate")
				}
				entry, ok := ledger.Entry(c.SerialNumber)
				if !ok || entry.LintCert == nil || !bytes.Equal(entry.Cert, got.DER) {
					t.Fatalf("ledger entry incomplete: reserved=%v intent=%v issued=%v", ok, entry.LintCert != nil, entry.Cert != nil)
				}
				lint, err := x509.ParseCertificate(entry.LintCert)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(lint.RawTBSCertificate, c.RawTBSCertificate) {
					t.Fatal("the signed TBS is not the linted TBS")
				}
				if lint.CheckSignatureFrom(iss.Certificate()) == nil {
					t.Fatal("the lint certificate verifies with the real issuer key; it must be signed by a throwaway key")
				}
				if !bytes.Equal(got.Chain[0], iss.Certificate().Raw) {
					t.Error("chain does not start with the issuer")
				}
			})
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIssuerPickedByKeyType(t *testing.T) {
	tok := issuancetest.Token(t)
	root := issuancetest.NewRoot(t)
	ecIss := issuancetest.Issuer(t, tok, root, hsm.ECDSAP256)
	rsaIss := issuancetest.Issuer(t, tok, root, hsm.RSA2048)
	svc := newService(t, issuancetest.NewMemoryLedger(), []*issuance.Issuer{ecIss, rsaIss})
	for _, sk := range subjectKeys(t) {
		got, err := svc.Issue(context.Background(), issuance.Request{
			CSR: issuancetest.CSR(t, sk.key, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}), DNSNames: []string{"a.example.com"},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := ecIss.Name()
		if _, ok := sk.key.(*rsa.PrivateKey); ok {
			want = rsaIss.Name()
		}
		if got.Issuer != want {
			t.Errorf("%s key issued by %s, want %s", sk.name, got.Issuer, want)
		}
	}
}

func TestProfileCommonNameAndIPs(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	withCN := issuancetest.Profile(t, "cn", issuance.ProfileConfig{IncludeCommonName: true, Validity: durationOf(7 * 24 * time.Hour), ExtKeyUsages: []string{"serverAuth", "clientAuth"}})
	svc := newService(t, issuancetest.NewMemoryLedger(), []*issuance.Issuer{iss}, issuancetest.Profile(t, "tls", issuance.ProfileConfig{}), withCN)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := issuancetest.CSR(t, key, &x509.CertificateRequest{
		DNSNames:    []string{"b.example.com", "a.example.com"},
		IPAddresses: []net.IP{net.ParseIP("::ffff:93.184.216.34"), net.ParseIP("2606:4700:4700::1111")},
	})
	got, err := svc.Issue(context.Background(), issuance.Request{
		CSR: csr, Profile: "cn", DNSNames: []string{"a.example.com", "b.example.com"},
		IPAddresses: []net.IP{net.ParseIP("93.184.216.34"), net.ParseIP("2606:4700:4700::1111")},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := got.Cert
	if c.Subject.CommonName != "a.example.com" {
		t.Errorf("CN %q, want the first name a.example", c.Subject.CommonName)
	}
	if len(c.IPAddresses) != 2 || len(c.IPAddresses[0]) != 4 {
		t.Errorf("IPs %v: want the IPv4-mapped address in 4-byte form", c.IPAddresses)
	}
	if d := c.NotAfter.Sub(c.NotBefore) + time.Second; d != 7*24*time.Hour || got.Profile != "cn" {
		t.Errorf("profile cn not applied: validity %s profile %s", d, got.Profile)
	}
	if len(c.ExtKeyUsage) != 2 {
		t.Errorf("EKU %v, want serverAuth and clientAuth", c.ExtKeyUsage)
	}
	if _, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, Profile: "nope"}); !errors.Is(err, issuance.ErrUnknownProfile) {
		t.Errorf("unknown profile: %v", err)
	}
}

func durationOf(d time.Duration) config.Duration { return config.Duration{Duration: d} }

// Each refused CSR has its own clear error.
func TestRejectedCSRs(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	svc := newService(t, issuancetest.NewMemoryLedger(), []*issuance.Issuer{iss}, issuancetest.Profile(t, "tls", issuance.ProfileConfig{MaxNames: 3}))
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaE3 := rsaWithExponent3(t)
	mailto, _ := url.Parse("https://example.com/x")

	tampered := issuancetest.CSR(t, p256, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}})
	tampered[len(tampered)-1] ^= 0x01

	cases := []struct {
		name  string
		csr   []byte
		names []string
		ips   []net.IP
		is    error
		says  string
	}{
		{"RSA 1024", issuancetest.CSR(t, rsa1024, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}), []string{"a.example.com"}, nil, issuance.ErrBadPublicKey, "1024 bits"},
		{"RSA e=3", rsaE3, []string{"a.example.com"}, nil, issuance.ErrBadPublicKey, "exponent 3"},
		{"P-224", issuancetest.CSR(t, p224, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}), []string{"a.example.com"}, nil, issuance.ErrBadPublicKey, "P-224"},
		{"SHA-1", issuancetest.CSR(t, rsa2048, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, SignatureAlgorithm: x509.SHA1WithRSA}), []string{"a.example.com"}, nil, issuance.ErrBadSignatureAlgorithm, "SHA1-RSA"},
		{"bad self-signature", tampered, []string{"a.example.com"}, nil, issuance.ErrBadCSR, "signature"},
		{"not DER", []byte("hello"), nil, nil, issuance.ErrBadCSR, "bad CSR"},
		{"underscore", csrFor(t, p256, "a_b.example.com"), []string{"a_b.example.com"}, nil, issuance.ErrRejectedName, `character '_'`},
		{"wildcard in the middle", csrFor(t, p256, "a.*.example.com"), []string{"a.*.example.com"}, nil, issuance.ErrRejectedName, "not the leftmost label"},
		{"partial wildcard", csrFor(t, p256, "a*.example.com"), []string{"a*.example.com"}, nil, issuance.ErrRejectedName, "whole label"},
		{"empty label", csrFor(t, p256, "a..example.com"), []string{"a..example.com"}, nil, issuance.ErrRejectedName, "empty label"},
		{"leading hyphen", csrFor(t, p256, "-a.example.com"), []string{"-a.example.com"}, nil, issuance.ErrRejectedName, "hyphen"},
		{"trailing dot", csrFor(t, p256, "a.example.com."), []string{"a.example.com."}, nil, issuance.ErrRejectedName, "ends with a dot"},
		{"IP as a DNS name", csrFor(t, p256, "192.0.2.1"), []string{"192.0.2.1"}, nil, issuance.ErrRejectedName, "is an IP address"},
		{"email SAN", issuancetest.CSR(t, p256, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, EmailAddresses: []string{"x@a.example.com"}}), []string{"a.example.com"}, nil, issuance.ErrBadCSR, "email"},
		{"URI SAN", issuancetest.CSR(t, p256, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, URIs: []*url.URL{mailto}}), []string{"a.example.com"}, nil, issuance.ErrBadCSR, "URI"},
		{"CN not among names", issuancetest.CSR(t, p256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "b.example.com"}, DNSNames: []string{"a.example.com"}}), []string{"a.example.com"}, nil, issuance.ErrBadCSR, "common name"},
		{"no names", issuancetest.CSR(t, p256, &x509.CertificateRequest{}), nil, nil, issuance.ErrBadCSR, "no DNS names"},
		{"too many names", csrFor(t, p256, "a.example.com", "b.example.com", "c.example.com", "d.example.com"), []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com"}, nil, issuance.ErrBadCSR, "more than the 3 allowed"},
		{"name not authorised", csrFor(t, p256, "a.example.com", "evil.example.com"), []string{"a.example.com"}, nil, issuance.ErrNamesMismatch, "evil.example.com"},
		{"authorised name missing", csrFor(t, p256, "a.example.com"), []string{"a.example.com", "b.example.com"}, nil, issuance.ErrNamesMismatch, "b.example.com"},
		{"unspecified IP", issuancetest.CSR(t, p256, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4zero}}), nil, []net.IP{net.IPv4zero}, issuance.ErrRejectedName, "unspecified"},
	}
	before := tok.Stats().Signs
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := svc.Issue(context.Background(), issuance.Request{CSR: c.csr, DNSNames: c.names, IPAddresses: c.ips})
			if !errors.Is(err, c.is) {
				t.Fatalf("got %v, want %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %q does not say %q", err, c.says)
			}
		})
	}
	if tok.Stats().Signs != before {
		t.Fatalf("refused CSRs reached the HSM: %d signatures", tok.Stats().Signs-before)
	}
}

func csrFor(t *testing.T, key crypto.Signer, names ...string) []byte {
	return issuancetest.CSR(t, key, &x509.CertificateRequest{DNSNames: names})
}

// rsaWithExponent3 builds a CSR for an RSA key with e = 3, which Go will not
// generate: it swaps the exponent into a normal CSR's public key. The signature
// no longer verifies, but the key is checked first, which is what this tests.
func rsaWithExponent3(t *testing.T) []byte {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	der := issuancetest.CSR(t, k, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}})
	oldSPKI, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	newSPKI, _ := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: k.N, E: 3})
	var outer struct {
		Info asn1.RawValue
		Alg  asn1.RawValue
		Sig  asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	info, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: bytes.Replace(outer.Info.Bytes, oldSPKI, newSPKI, 1)})
	if err != nil {
		t.Fatal(err)
	}
	outer.Info = asn1.RawValue{FullBytes: info}
	out, err := asn1.Marshal(outer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type failingLedger struct {
	*issuancetest.MemoryLedger
	failIntent bool
}

func (l failingLedger) RecordIntent(ctx context.Context, r issuance.SerialReservation) error {
	if l.failIntent {
		return errors.New("disk full")
	}
	return l.MemoryLedger.RecordIntent(ctx, r)
}

// An issuance whose ledger write fails never reaches the HSM.
func TestLedgerFailureNeverReachesHSM(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "a.example.com")
	for _, l := range []failingLedger{
		{MemoryLedger: issuancetest.NewMemoryLedger(), failIntent: true},
	} {
		svc := newService(t, l, []*issuance.Issuer{iss})
		before := tok.Stats().Signs
		_, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}})
		if !errors.Is(err, issuance.ErrLedger) || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("got %v, want ErrLedger with the cause", err)
		}
		if n := tok.Stats().Signs - before; n != 0 {
			t.Fatalf("the HSM signed %d time(s) although the ledger failed", n)
		}
	}
}

// An error-level lint stops issuance before the HSM signs; the same lint
// ignored in the profile lets it through.
func TestLintErrorStopsIssuance(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "a.example.com")
	ledger := issuancetest.NewMemoryLedger()
	long := issuancetest.Profile(t, "long", issuance.ProfileConfig{Validity: durationOf(500 * 24 * time.Hour)})
	svc := newService(t, ledger, []*issuance.Issuer{iss}, long)
	before := tok.Stats().Signs
	_, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}})
	if !errors.Is(err, issuance.ErrLint) || !strings.Contains(err.Error(), "e_tls_server_cert_valid_time_longer_than_398_days") {
		t.Fatalf("got %v, want ErrLint naming the validity lint", err)
	}
	if tok.Stats().Signs != before {
		t.Fatal("a certificate that failed lint reached the HSM")
	}
	if ledger.Len() != 0 {
		t.Fatalf("ledger has %d entries after a lint failure, want none: a certificate that fails lint is no intent to sign", ledger.Len())
	}

	ignoring := issuancetest.Profile(t, "long", issuance.ProfileConfig{
		Validity:     durationOf(500 * 24 * time.Hour),
		IgnoredLints: []string{"e_tls_server_cert_valid_time_longer_than_398_days", "e_server_cert_valid_time_longer_than_200_days"},
	})
	svc = newService(t, issuancetest.NewMemoryLedger(), []*issuance.Issuer{iss}, ignoring)
	if _, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}}); err != nil {
		t.Fatalf("with the lint ignored: %v", err)
	}
	if _, err := issuance.NewProfile("x", issuance.ProfileConfig{IgnoredLints: []string{"e_no_such_lint"}}); err == nil ||
		!strings.Contains(err.Error(), "profiles.x.ignored_lints") {
		t.Fatalf("unknown lint name: %v", err)
	}
}

func TestPreparedSignsOnce(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	svc := newService(t, issuancetest.NewMemoryLedger(), []*issuance.Issuer{iss})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := svc.Prepare(context.Background(), issuance.Request{CSR: csrFor(t, key, "a.example.com"), DNSNames: []string{"a.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Sign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Sign(context.Background()); !errors.Is(err, issuance.ErrAlreadySigned) {
		t.Fatalf("second sign: %v", err)
	}
}

func TestNewIssuerChecks(t *testing.T) {
	tok := issuancetest.Token(t)
	root := issuancetest.NewRoot(t)
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "k", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrong := root.Intermediate(t, "wrong key", other.Public())
	if _, err := issuance.NewIssuer(context.Background(), "x", wrong, key, issuance.URLs{}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(9), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, leafTmpl, root.Cert, key.Public(), root.Key)
	leaf, _ := x509.ParseCertificate(der)
	if _, err := issuance.NewIssuer(context.Background(), "x", leaf, key, issuance.URLs{}); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("non-CA certificate: %v", err)
	}
}
