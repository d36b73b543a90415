package ceremony

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

var keyUsageNames = map[string]x509.KeyUsage{
	"digitalSignature": x509.KeyUsageDigitalSignature,
	"certSign":         x509.KeyUsageCertSign,
	"crlSign":          x509.KeyUsageCRLSign,
	"keyEncipherment":  x509.KeyUsageKeyEncipherment,
	"keyAgreement":     x509.KeyUsageKeyAgreement,
}

func keyUsages(names []string) (x509.KeyUsage, error) {
	var ku x509.KeyUsage
	for _, n := range names {
		u, ok := keyUsageNames[n]
		if !ok {
			return 0, fmt.Errorf("unknown key usage %q (want digitalSignature, certSign, crlSign, keyEncipherment or keyAgreement)", n)
		}
		ku |= u
	}
	return ku, nil
}

var extKeyUsageNames = map[string]x509.ExtKeyUsage{
	"serverAuth":      x509.ExtKeyUsageServerAuth,
	"clientAuth":      x509.ExtKeyUsageClientAuth,
	"codeSigning":     x509.ExtKeyUsageCodeSigning,
	"emailProtection": x509.ExtKeyUsageEmailProtection,
	"OCSPSigning":     x509.ExtKeyUsageOCSPSigning,
}

func extKeyUsages(names []string) ([]x509.ExtKeyUsage, error) {
	var out []x509.ExtKeyUsage
	for _, n := range names {
		u, ok := extKeyUsageNames[n]
		if !ok {
			return nil, fmt.Errorf("unknown extended key usage %q (want serverAuth, clientAuth, codeSigning, emailProtection or OCSPSigning)", n)
		}
		out = append(out, u)
	}
	return out, nil
}

func policies(oids []string) ([]x509.OID, error) {
	var out []x509.OID
	for _, s := range oids {
		parts := strings.Split(s, ".")
		ints := make([]uint64, len(parts))
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil || len(parts) < 2 {
				return nil, fmt.Errorf("policy %q is not a dotted OID", s)
			}
			ints[i] = n
		}
		oid, err := x509.OIDFromInts(ints)
		if err != nil {
			return nil, fmt.Errorf("policy %q: %v", s, err)
		}
		out = append(out, oid)
	}
	return out, nil
}

// reasonCodes are the CRL reason codes of RFC 5280 5.3.1 that a CA may use
// (unspecified is expressed by leaving the reason out; removeFromCRL is for
// delta CRLs only).
var reasonCodes = map[string]int{
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"certificateHold":      6,
	"privilegeWithdrawn":   9,
	"aACompromise":         10,
}

func reasonCode(s string) (int, error) {
	if s == "" || s == "unspecified" {
		return 0, nil
	}
	c, ok := reasonCodes[s]
	if !ok {
		return 0, fmt.Errorf("unknown reason %q (want keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn or aACompromise)", s)
	}
	return c, nil
}

func (s Subject) name() pkix.Name {
	n := pkix.Name{CommonName: s.CommonName}
	add := func(dst *[]string, v string) {
		if v != "" {
			*dst = append(*dst, v)
		}
	}
	add(&n.Organization, s.Organization)
	add(&n.OrganizationalUnit, s.OrganizationalUnit)
	add(&n.Country, s.Country)
	add(&n.Province, s.Province)
	add(&n.Locality, s.Locality)
	return n
}

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// caTemplate builds the template for a root, intermediate or cross-certificate.
func (pr Profile) caTemplate(serial *big.Int, subject pkix.Name, maxPathLen int) (*x509.Certificate, error) {
	t, err := pr.baseTemplate(serial, subject)
	if err != nil {
		return nil, err
	}
	ku, err := keyUsages(pr.KeyUsages)
	if err != nil {
		return nil, err
	}
	if ku == 0 {
		ku = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	ekus, err := extKeyUsages(pr.ExtKeyUsages)
	if err != nil {
		return nil, err
	}
	t.KeyUsage, t.ExtKeyUsage = ku, ekus
	t.IsCA, t.MaxPathLen, t.MaxPathLenZero = true, maxPathLen, maxPathLen == 0
	return t, nil
}

// baseTemplate holds what every certificate of a ceremony takes from its
// profile: serial, subject, validity, policies, and the CRL, issuer and OCSP
// URLs.
func (pr Profile) baseTemplate(serial *big.Int, subject pkix.Name) (*x509.Certificate, error) {
	nb, err := parseTime(pr.NotBefore)
	if err != nil {
		return nil, err
	}
	na, err := parseTime(pr.NotAfter)
	if err != nil {
		return nil, err
	}
	pols, err := policies(pr.Policies)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             nb,
		NotAfter:              na,
		Policies:              pols,
		BasicConstraintsValid: true,
	}
	if pr.CRLURL != "" {
		t.CRLDistributionPoints = []string{pr.CRLURL}
	}
	if pr.IssuerURL != "" {
		t.IssuingCertificateURL = []string{pr.IssuerURL}
	}
	if pr.OCSPURL != "" {
		t.OCSPServer = []string{pr.OCSPURL}
	}
	return t, nil
}

// ocspSignerTemplate builds a delegated OCSP responder certificate: not a CA,
// digitalSignature, id-kp-OCSPSigning only, and id-pkix-ocsp-nocheck so that
// relying parties do not ask about the responder itself.
func (pr Profile) ocspSignerTemplate(serial *big.Int) (*x509.Certificate, error) {
	t, err := pr.baseTemplate(serial, pr.Subject.name())
	if err != nil {
		return nil, err
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	t.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1.NullBytes}}
	return t, nil
}
