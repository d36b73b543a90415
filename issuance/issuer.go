package issuance

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/anvil-pki/anvil/hsm"
)

// URLs are what an issuer's certificates point relying parties at. Empty ones
// are left out of the certificate.
type URLs struct {
	IssuerURL string // AIA caIssuers: where the issuer certificate is served
	OCSPURL   string // AIA OCSP
	CRLURL    string // CRL distribution point (of shard 0 when sharded)
	// CRLShards is how many partitioned CRLs the issuer publishes (0 or 1:
	// one, at CRLURL); see CRLShardURL for their URLs.
	CRLShards int
}

// Issuer is an issuer certificate and the HSM key that matches it. It can only
// sign through a Prepared issuance.
type Issuer struct {
	name  string
	cert  *x509.Certificate
	chain [][]byte // DER, the issuer certificate first, then its issuers; no root
	// alternates are other chains to serve after a leaf, such as one through a
	// cross-signed root (RFC 8555 7.4.2, Link rel="alternate").
	alternates [][][]byte
	signer     crypto.Signer
	sigAlg     x509.SignatureAlgorithm
	hash       crypto.Hash
	urls       URLs

	// lintSigner is a throwaway key of the same algorithm, and lintParent a
	// stand-in parent with the issuer's name and key identifier but the throwaway
	// public key: a certificate built against it has the real TBS.
	lintSigner crypto.Signer
	lintParent *x509.Certificate
}

// healthChecker is implemented by hsm.Key.
type healthChecker interface {
	CheckAgainst(ctx context.Context, pub crypto.PublicKey) error
}

// NewIssuer pairs an issuer certificate with its signing key. The key's public
// half must be the certificate's, and a test signature must verify with the
// certificate's key; the certificate must be a CA certificate allowed to sign
// certificates, with a subject key identifier. chain holds the certificates
// above the issuer, up to but not including a root, for clients to download.
func NewIssuer(ctx context.Context, name string, cert *x509.Certificate, signer crypto.Signer, urls URLs, chain ...*x509.Certificate) (*Issuer, error) {
	fail := func(format string, args ...any) (*Issuer, error) {
		return nil, fmt.Errorf("issuer %s: %s", name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return nil, errors.New("issuer: empty name")
	}
	if cert == nil || signer == nil {
		return fail("certificate and signer are both required")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fail("certificate %q is not a CA certificate", cert.Subject)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fail("certificate %q lacks the keyCertSign key usage", cert.Subject)
	}
	if len(cert.SubjectKeyId) == 0 {
		return fail("certificate %q has no subject key identifier", cert.Subject)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fail("the signing key does not match the public key of certificate %q", cert.Subject)
	}
	if err := testSignature(ctx, signer, cert.PublicKey); err != nil {
		return fail("test signature: %v", err)
	}
	sigAlg, hash, err := signatureParams(cert.PublicKey)
	if err != nil {
		return fail("%v", err)
	}
	if err := urls.checkShards(); err != nil {
		return fail("%v", err)
	}
	lintSigner, err := newLintKey(cert.PublicKey)
	if err != nil {
		return fail("%v", err)
	}
	iss := &Issuer{
		name:       name,
		cert:       cert,
		signer:     signer,
		sigAlg:     sigAlg,
		hash:       hash,
		urls:       urls,
		lintSigner: lintSigner,
		lintParent: &x509.Certificate{
			Raw:          cert.Raw,
			RawSubject:   cert.RawSubject,
			Subject:      cert.Subject,
			SubjectKeyId: cert.SubjectKeyId,
			PublicKey:    lintSigner.Public(),
		},
		chain: [][]byte{cert.Raw},
	}
	for _, c := range chain {
		iss.chain = append(iss.chain, c.Raw)
	}
	return iss, nil
}

// testSignature signs a random digest and verifies it with pub, through the
// key's own health check when it has one.
func testSignature(ctx context.Context, signer crypto.Signer, pub crypto.PublicKey) error {
	if hc, ok := signer.(healthChecker); ok {
		return hc.CheckAgainst(ctx, pub)
	}
	return hsm.CheckSigner(signer, pub)
}

// AddAlternateChain adds another chain clients may download after a leaf of
// this issuer. Its first certificate must carry the issuer's name and key (the
// issuer certificate itself, or a cross-signed twin), each must be signed by the
// next, so that a client that prefers it gets a chain that works.
func (i *Issuer) AddAlternateChain(chain ...*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("empty alternate chain")
	}
	first := chain[0]
	pub, ok := first.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(i.cert.PublicKey) || string(first.RawSubject) != string(i.cert.RawSubject) {
		return fmt.Errorf("alternate chain of %s: %q does not carry the issuer's name and key", i.name, first.Subject)
	}
	for k := 0; k+1 < len(chain); k++ {
		if err := chain[k].CheckSignatureFrom(chain[k+1]); err != nil {
			return fmt.Errorf("alternate chain of %s: %q is not signed by %q: %w", i.name, chain[k].Subject, chain[k+1].Subject, err)
		}
	}
	var ders [][]byte
	for _, c := range chain {
		ders = append(ders, c.Raw)
	}
	i.alternates = append(i.alternates, ders)
	return nil
}

// Chains returns the default chain, then the alternates.
func (i *Issuer) Chains() [][][]byte { return append([][][]byte{i.chain}, i.alternates...) }

// Name is the issuer's configured name.
func (i *Issuer) Name() string { return i.name }

// Certificate is the issuer certificate.
func (i *Issuer) Certificate() *x509.Certificate { return i.cert }

// Chain returns the DER certificates to serve after a leaf: the issuer first.
func (i *Issuer) Chain() [][]byte { return i.chain }

// URLs returns what the issuer's certificates point at.
func (i *Issuer) URLs() URLs { return i.urls }

// tokenKey is implemented by hsm.Key: a key that knows its token.
type tokenKey interface{ Token() *hsm.Token }

// available reports whether the issuer's key can be asked to sign, from the
// token's last known state: an atomic read, never a call into the module. A
// signer that is not an HSM key is taken to be available.
func (i *Issuer) available() bool {
	k, ok := i.signer.(tokenKey)
	if !ok || k.Token() == nil {
		return true
	}
	return k.Token().Stats().Available
}
