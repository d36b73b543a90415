package issuance

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
)

// SignedCertificate is a certificate signed by SignCertificate, with the lint
// certificate whose TBS it carries.
type SignedCertificate struct {
	LintDER []byte // signed by a throwaway key; the same TBS
	DER     []byte
	Cert    *x509.Certificate
}

// SignCertificate signs a CA-made certificate (a root, an intermediate, a
// cross-certificate, an OCSP responder certificate) the way leaves are signed:
// build it against a stand-in parent with a throwaway key, lint it, sign exactly
// that TBS with signer, verify the signature against the parent's key (or the
// subject's own, for a self-signed certificate), and lint the signed result
// again. parent == nil means self-signed. Lints named in ignoredLints do not
// stop signing.
//
// The ceremony uses it; it keeps no records, so its caller must (the ceremony
// writes a transcript).
func SignCertificate(ctx context.Context, template, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer, ignoredLints []string) (*SignedCertificate, error) {
	if template == nil || pub == nil || signer == nil {
		return nil, errors.New("issuance: template, public key and signer are all required")
	}
	lt, err := newLinter(ignoredLints)
	if err != nil {
		return nil, err
	}
	verifyWith := pub
	if parent != nil {
		verifyWith = parent.PublicKey
	}
	sigAlg, hash, lintKey, err := prepareSigner(signer, verifyWith, "issuer's public key")
	if err != nil {
		return nil, err
	}
	tmpl := *template
	tmpl.SignatureAlgorithm = sigAlg
	var stand *x509.Certificate
	if parent == nil {
		// Self-signed: the template is its own parent. Leave its PublicKey unset
		// so that x509 does not insist the throwaway key matches it.
		stand = &tmpl
		stand.PublicKey = nil
	} else {
		stand = &x509.Certificate{RawSubject: parent.RawSubject, Subject: parent.Subject, SubjectKeyId: parent.SubjectKeyId, PublicKey: lintKey.Public()}
	}
	lintDER, err := x509.CreateCertificate(rand.Reader, &tmpl, stand, pub, lintKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: build certificate: %w", err)
	}
	if err := lt.checkAs(lintDER, parent == nil); err != nil {
		return nil, err
	}
	der, err := signLinted(ctx, signer, hash, lintDER)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: signed certificate does not parse: %v", ErrSignature, err)
	}
	if err := sameTBS(cert, lintDER); err != nil {
		return nil, err
	}
	verifier := parent
	if verifier == nil {
		verifier = cert // self-signed
	}
	if err := verifier.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err := lt.check(der); err != nil {
		return nil, fmt.Errorf("after signing: %w", err)
	}
	return &SignedCertificate{LintDER: lintDER, DER: der, Cert: cert}, nil
}

// SignedCRL is a CRL signed by SignRevocationList.
type SignedCRL struct {
	LintDER []byte
	DER     []byte
	CRL     *x509.RevocationList
}

// CRLScope says which certificates a CRL covers; it decides the issuing
// distribution point flags and how far nextUpdate may be.
type CRLScope int

// CRL scopes.
const (
	CRLCoversSubscribers CRLScope = iota // onlyContainsUserCerts; nextUpdate within 10 days
	CRLCoversCAs                         // onlyContainsCACerts; nextUpdate within 12 months
)

// SignRevocationList signs a CRL the same way: lint with a throwaway key, sign
// exactly that TBS, verify against issuer, lint again. The template should
// carry an issuing distribution point (see IssuingDistributionPoint).
func SignRevocationList(ctx context.Context, template *x509.RevocationList, issuer *x509.Certificate, signer crypto.Signer, scope CRLScope, ignoredLints []string) (*SignedCRL, error) {
	if template == nil || issuer == nil || signer == nil {
		return nil, errors.New("issuance: template, issuer and signer are all required")
	}
	toml := ""
	if scope == CRLCoversCAs {
		toml = caCRLLintConfig
	}
	lt, err := newLinterConfig(ignoredLints, toml)
	if err != nil {
		return nil, err
	}
	sigAlg, hash, lintKey, err := prepareSigner(signer, issuer.PublicKey, "CRL issuer's public key")
	if err != nil {
		return nil, err
	}
	tmpl := *template
	tmpl.SignatureAlgorithm = sigAlg
	stand := &x509.Certificate{RawSubject: issuer.RawSubject, Subject: issuer.Subject, SubjectKeyId: issuer.SubjectKeyId,
		KeyUsage: issuer.KeyUsage, PublicKey: lintKey.Public()}
	lintDER, err := x509.CreateRevocationList(rand.Reader, &tmpl, stand, lintKey)
	if err != nil {
		return nil, fmt.Errorf("issuance: build CRL: %w", err)
	}
	if err := lt.checkCRL(lintDER); err != nil {
		return nil, err
	}
	der, err := signLinted(ctx, signer, hash, lintDER)
	if err != nil {
		return nil, fmt.Errorf("issuance: sign CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: signed CRL does not parse: %v", ErrSignature, err)
	}
	lintTBS, _, err := splitSigned(lintDER)
	if err != nil {
		return nil, err
	}
	if string(crl.RawTBSRevocationList) != string(lintTBS) {
		return nil, fmt.Errorf("%w: the signed CRL TBS differs from the linted one", ErrSignature)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: CRL signature: %v", ErrSignature, err)
	}
	if err := lt.checkCRL(der); err != nil {
		return nil, fmt.Errorf("after signing: %w", err)
	}
	return &SignedCRL{LintDER: lintDER, DER: der, CRL: crl}, nil
}

// oidIssuingDistributionPoint is id-ce-issuingDistributionPoint (RFC 5280 5.2.5).
var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// IssuingDistributionPoint builds the critical CRL extension that names where
// the CRL is published (url, may be empty) and which certificates it covers.
func IssuingDistributionPoint(url string, scope CRLScope) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if url != "" {
			// distributionPoint [0] { fullName [0] { uniformResourceIdentifier [6] } }
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes([]byte(url))
					})
				})
			})
		}
		tag := cbasn1.Tag(1).ContextSpecific() // onlyContainsUserCerts
		if scope == CRLCoversCAs {
			tag = cbasn1.Tag(2).ContextSpecific() // onlyContainsCACerts
		}
		b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
	})
	return pkix.Extension{Id: oidIssuingDistributionPoint, Critical: true, Value: b.BytesOrPanic()}
}
