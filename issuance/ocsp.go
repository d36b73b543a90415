package issuance

import (
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP certificate statuses.
const (
	OCSPGood    = ocsp.Good
	OCSPRevoked = ocsp.Revoked
	OCSPUnknown = ocsp.Unknown
)

// OCSPEntry is what one OCSP response says about one certificate.
type OCSPEntry struct {
	Serial     *big.Int
	Status     int // OCSPGood, OCSPRevoked or OCSPUnknown
	RevokedAt  time.Time
	Reason     int // CRL reason code, for OCSPRevoked
	ThisUpdate time.Time
	NextUpdate time.Time
	// CertIDHash is the hash the request's CertID used (SHA-1 or SHA-256):
	// the response names the certificate the same way.
	CertIDHash crypto.Hash
	// Nonce, when the request carried one, is echoed in the response
	// extensions (RFC 6960 4.4.1); such a response is never cached.
	Nonce []byte
}

// OCSPSigner signs OCSP responses for one issuer, with the issuer's own key or
// a delegated responder certificate (id-kp-OCSPSigning, from the ceremony) and
// its key, which must also live in an HSM.
type OCSPSigner struct {
	issuer    *Issuer
	responder *x509.Certificate // the delegated responder; nil when the issuer signs
	signer    crypto.Signer
	hash      crypto.Hash
	sigAlgID  pkix.AlgorithmIdentifier
	keyHash   []byte // SHA-1 of the responder's public key: the byKey responder ID
}

var (
	oidOCSPBasic   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNonce   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidSHA1        = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	sigAlgorithmID = map[x509.SignatureAlgorithm]pkix.AlgorithmIdentifier{
		x509.ECDSAWithSHA256: {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}},
		x509.ECDSAWithSHA384: {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}},
		x509.SHA256WithRSA:   {Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue},
	}
)

// NewOCSPSigner returns the signer of this issuer's OCSP responses. With a
// responder certificate, it must be issued by this issuer for id-kp-OCSPSigning
// and key must be its key; without, the issuer's own key signs.
func (i *Issuer) NewOCSPSigner(ctx context.Context, responder *x509.Certificate, key crypto.Signer) (*OCSPSigner, error) {
	o := &OCSPSigner{issuer: i, signer: i.signer, responder: responder}
	pubCert := i.cert
	if responder != nil {
		if key == nil {
			return nil, fmt.Errorf("OCSP responder %q: no key", responder.Subject)
		}
		if err := responder.CheckSignatureFrom(i.cert); err != nil {
			return nil, fmt.Errorf("OCSP responder %q is not issued by %s: %w", responder.Subject, i.name, err)
		}
		if !slices.Contains(responder.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, fmt.Errorf("OCSP responder %q lacks id-kp-OCSPSigning", responder.Subject)
		}
		if p, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !p.Equal(responder.PublicKey) {
			return nil, fmt.Errorf("OCSP responder %q: the key does not match the certificate", responder.Subject)
		}
		if err := testSignature(ctx, key, responder.PublicKey); err != nil {
			return nil, fmt.Errorf("OCSP responder %q: test signature: %w", responder.Subject, err)
		}
		o.signer, pubCert = key, responder
	}
	alg, hash, err := signatureParams(o.signer.Public())
	if err != nil {
		return nil, err
	}
	o.hash, o.sigAlgID = hash, sigAlgorithmID[alg]
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(pubCert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	h := sha1.Sum(spki.PublicKey.RightAlign())
	o.keyHash = h[:]
	return o, nil
}

// Issuer is the issuer the signer answers for.
func (o *OCSPSigner) Issuer() *Issuer { return o.issuer }

// IssuerHashes returns the name and key hashes of the issuer under hash, as
// a request's CertID carries them.
func (i *Issuer) IssuerHashes(hash crypto.Hash) (nameHash, keyHash []byte, err error) {
	if !hash.Available() {
		return nil, nil, fmt.Errorf("hash %v unavailable", hash)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(i.cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, nil, err
	}
	h := hash.New()
	h.Write(i.cert.RawSubject)
	nameHash = h.Sum(nil)
	h.Reset()
	h.Write(spki.PublicKey.RightAlign())
	return nameHash, h.Sum(nil), nil
}

// The OCSP structures of RFC 6960 4.2.1, as Anvil writes them: the responder
// named by key hash (RFC 5019), one single response, and response extensions
// for the nonce.
type ocspCertID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	KeyHash       []byte
	Serial        *big.Int
}

type ocspRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type ocspSingleResponse struct {
	CertID     ocspCertID
	Good       asn1.Flag       `asn1:"tag:0,optional"`
	Revoked    ocspRevokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag       `asn1:"tag:2,optional"`
	ThisUpdate time.Time       `asn1:"generalized"`
	NextUpdate time.Time       `asn1:"generalized,explicit,tag:0,optional"`
}

type ocspResponseData struct {
	ResponderKeyHash []byte    `asn1:"explicit,tag:2"`
	ProducedAt       time.Time `asn1:"generalized"`
	Responses        []ocspSingleResponse
	Extensions       []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspBasicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspResponseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type ocspResponse struct {
	Status        asn1.Enumerated
	ResponseBytes ocspResponseBytes `asn1:"explicit,tag:0"`
}

// Sign makes a signed OCSP response for e. The signature is verified against
// the responder's key before the response is returned: an HSM can return a
// corrupted signature as success.
//
// Why by hand, and not golang.org/x/crypto/ocsp.CreateResponse (its sibling
// ParseResponse checks every response below): CreateResponse (x/crypto v0.58.0)
//   - signs with priv.Sign(rand.Reader, ...), with no context: a PKCS#11 C_Sign
//     that never returns (a hung network HSM, see PITFALLS.md) would hang the
//     responder. Here an HSM key signs through SignContext, under the caller's
//     deadline;
//   - names the responder byName (its subject); Anvil names it byKey, the SHA-1
//     of the responder's key, as RFC 5019 recommends for responders that
//     answer at volume: shorter, and unchanged when a responder certificate is
//     reissued under another name;
//   - puts template.ExtraExtensions in the singleExtensions of the one response,
//     while RFC 6960 4.4.1 carries the nonce in the responseExtensions, where
//     clients look for it;
//   - truncates producedAt to the minute, which can put it before a thisUpdate
//     taken within the same minute.
//
// The structures above are the six RFC 6960 4.2.1 types that this needs.
func (o *OCSPSigner) Sign(ctx context.Context, e OCSPEntry) ([]byte, error) {
	hashAlg, hashOID := crypto.SHA1, oidSHA1
	if e.CertIDHash == crypto.SHA256 {
		hashAlg, hashOID = crypto.SHA256, oidSHA256
	}
	nameHash, keyHash, err := o.issuer.IssuerHashes(hashAlg)
	if err != nil {
		return nil, err
	}
	single := ocspSingleResponse{
		CertID: ocspCertID{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOID, Parameters: asn1.NullRawValue},
			NameHash:      nameHash, KeyHash: keyHash, Serial: e.Serial,
		},
		ThisUpdate: e.ThisUpdate.UTC(),
		NextUpdate: e.NextUpdate.UTC(),
	}
	switch e.Status {
	case OCSPGood:
		single.Good = true
	case OCSPRevoked:
		single.Revoked = ocspRevokedInfo{RevocationTime: e.RevokedAt.UTC(), Reason: asn1.Enumerated(e.Reason)}
	case OCSPUnknown:
		single.Unknown = true
	default:
		return nil, fmt.Errorf("ocsp: status %d", e.Status)
	}
	data := ocspResponseData{
		ResponderKeyHash: o.keyHash,
		ProducedAt:       time.Now().UTC().Truncate(time.Second),
		Responses:        []ocspSingleResponse{single},
	}
	if len(e.Nonce) > 0 {
		nonce, err := asn1.Marshal(e.Nonce)
		if err != nil {
			return nil, err
		}
		data.Extensions = []pkix.Extension{{Id: oidOCSPNonce, Value: nonce}}
	}
	tbs, err := asn1.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("ocsp: encode response data: %w", err)
	}
	h := o.hash.New()
	h.Write(tbs)
	digest := h.Sum(nil)
	sig, err := signDigest(ctx, o.signer, digest, o.hash)
	if err != nil {
		return nil, fmt.Errorf("ocsp: sign: %w", err)
	}
	basic := ocspBasicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: o.sigAlgID,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	}
	if o.responder != nil {
		basic.Certificates = []asn1.RawValue{{FullBytes: o.responder.Raw}}
	}
	basicDER, err := asn1.Marshal(basic)
	if err != nil {
		return nil, fmt.Errorf("ocsp: encode basic response: %w", err)
	}
	der, err := asn1.Marshal(ocspResponse{Status: 0, ResponseBytes: ocspResponseBytes{ResponseType: oidOCSPBasic, Response: basicDER}})
	if err != nil {
		return nil, fmt.Errorf("ocsp: encode response: %w", err)
	}
	// Parse it back with an independent implementation, which also verifies
	// the signature (and a delegated responder's certificate) against the issuer.
	parsed, err := ocsp.ParseResponse(der, o.issuer.cert)
	if err != nil {
		return nil, fmt.Errorf("%w: OCSP response: %v", ErrSignature, err)
	}
	if parsed.SerialNumber.Cmp(e.Serial) != 0 || parsed.Status != e.Status {
		return nil, errors.New("ocsp: the signed response does not say what was asked")
	}
	return der, nil
}

// SignCRL lints and signs the CRL of shard 0, the only one of an unsharded
// issuer: see SignShardCRL.
func (i *Issuer) SignCRL(ctx context.Context, number *big.Int, thisUpdate, nextUpdate time.Time, entries []x509.RevocationListEntry) (*SignedCRL, error) {
	return i.SignShardCRL(ctx, 0, number, thisUpdate, nextUpdate, entries)
}

// SignShardCRL lints and signs the CRL of one shard of this issuer's
// certificates, published at the shard's URL, which its issuing distribution
// point names so that it matches the CRL distribution point of every
// certificate in the shard (RFC 5280 5.2.5: a relying party checks that they
// match, so a CRL is never taken for another shard's).
func (i *Issuer) SignShardCRL(ctx context.Context, shard int, number *big.Int, thisUpdate, nextUpdate time.Time, entries []x509.RevocationListEntry) (*SignedCRL, error) {
	if shard < 0 || shard >= MaxCRLShards {
		return nil, fmt.Errorf("issuance: CRL shard %d of %s is out of range", shard, i.name)
	}
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
		ExtraExtensions:           []pkix.Extension{IssuingDistributionPoint(i.urls.CRLShardURL(shard), CRLCoversSubscribers)},
	}
	return SignRevocationList(ctx, tmpl, i.cert, i.signer, CRLCoversSubscribers, nil)
}
