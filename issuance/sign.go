package issuance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// contextSigner is a crypto.Signer that honours a context, as hsm.Key does.
type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// signatureParams picks the signature algorithm an issuer key signs with: the
// hash matched to the curve for ECDSA, SHA-256 for RSA (PKCS #1 v1.5).
func signatureParams(pub crypto.PublicKey) (x509.SignatureAlgorithm, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, crypto.SHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, crypto.SHA384, nil
		}
		return 0, 0, fmt.Errorf("unsupported issuer curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, crypto.SHA256, nil
	}
	return 0, 0, fmt.Errorf("unsupported issuer key type %T", pub)
}

// prepareSigner checks that signer holds the private half of want (named by
// what in the error), and returns the signature algorithm and hash it signs
// with and a throwaway key of the same algorithm to build the lint copy.
func prepareSigner(signer crypto.Signer, want crypto.PublicKey, what string) (x509.SignatureAlgorithm, crypto.Hash, crypto.Signer, error) {
	if p, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !p.Equal(want) {
		return 0, 0, nil, fmt.Errorf("issuance: the signing key does not match the %s", what)
	}
	sigAlg, hash, err := signatureParams(signer.Public())
	if err != nil {
		return 0, 0, nil, err
	}
	lintKey, err := newLintKey(signer.Public())
	if err != nil {
		return 0, 0, nil, err
	}
	return sigAlg, hash, lintKey, nil
}

// newLintKey makes a throwaway key whose signatures carry the same algorithm
// identifier as pub's, so that a TBS built with it is byte for byte the TBS the
// real key will sign. RSA throwaway keys are 2048 bits whatever the real size:
// the algorithm identifier does not depend on it and signing is much cheaper.
func newLintKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unsupported issuer key type %T", pub)
}

// splitSigned splits a DER certificate or CRL into its TBS and the raw
// signature AlgorithmIdentifier.
func splitSigned(der []byte) (tbs, algID []byte, err error) {
	in := cryptobyte.String(der)
	var outer, t, a cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !in.Empty() ||
		!outer.ReadASN1Element(&t, cbasn1.SEQUENCE) ||
		!outer.ReadASN1Element(&a, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("malformed signed structure")
	}
	return t, a, nil
}

// assemble builds SEQUENCE { tbs, algID, BIT STRING signature }.
func assemble(tbs, algID, sig []byte) ([]byte, error) {
	return asn1.Marshal(struct {
		TBS   asn1.RawValue
		AlgID asn1.RawValue
		Sig   asn1.BitString
	}{
		TBS:   asn1.RawValue{FullBytes: tbs},
		AlgID: asn1.RawValue{FullBytes: algID},
		Sig:   asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}

// signLinted signs the TBS of a linted structure (certificate or CRL) with the
// real key and returns the same structure with the real signature. The bytes
// signed are, by construction, the bytes that were linted.
func signLinted(ctx context.Context, signer crypto.Signer, hash crypto.Hash, lintDER []byte) ([]byte, error) {
	tbs, algID, err := splitSigned(lintDER)
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(tbs)
	digest := h.Sum(nil)
	sig, err := signDigest(ctx, signer, digest, hash)
	if err != nil {
		return nil, err
	}
	return assemble(tbs, algID, sig)
}

// signDigest signs digest with signer, under ctx when the signer honours one
// (an HSM key: a hung module then costs the caller its deadline, not forever).
func signDigest(ctx context.Context, signer crypto.Signer, digest []byte, hash crypto.Hash) ([]byte, error) {
	if cs, ok := signer.(contextSigner); ok {
		return cs.SignContext(ctx, digest, hash)
	}
	return signer.Sign(rand.Reader, digest, hash)
}

// sameTBS checks that a signed certificate's TBS is the linted one.
func sameTBS(signed *x509.Certificate, lintDER []byte) error {
	tbs, _, err := splitSigned(lintDER)
	if err != nil {
		return err
	}
	if !bytes.Equal(signed.RawTBSCertificate, tbs) {
		return fmt.Errorf("%w: the signed TBS differs from the linted TBS", ErrSignature)
	}
	return nil
}
