package issuance

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
)

// CheckedCSR is what survives CSR checking: the public key and the names, in
// canonical form, sorted and without duplicates. Nothing else from the CSR is
// ever used.
type CheckedCSR struct {
	PublicKey   crypto.PublicKey
	DNSNames    []string
	IPAddresses []net.IP
	CommonName  string // lower-cased; "" when the CSR has none
}

// acceptedCSRSignatures is the allow-list of CSR signature algorithms: no MD5,
// no SHA-1.
var acceptedCSRSignatures = map[x509.SignatureAlgorithm]bool{
	x509.SHA256WithRSA: true, x509.SHA384WithRSA: true, x509.SHA512WithRSA: true,
	x509.SHA256WithRSAPSS: true, x509.SHA384WithRSAPSS: true, x509.SHA512WithRSAPSS: true,
	x509.ECDSAWithSHA256: true, x509.ECDSAWithSHA384: true, x509.ECDSAWithSHA512: true,
}

// CheckCSR parses a DER CSR and checks it on its own terms: signature
// algorithm, self-signature, public key, and names (see NormalizeDNSName and
// NormalizeIP). Email and URI names are refused, a common name must be one of
// the names, and there must be between 1 and maxNames names.
func CheckCSR(der []byte, maxNames int) (*CheckedCSR, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if !acceptedCSRSignatures[csr.SignatureAlgorithm] {
		return nil, fmt.Errorf("%w: %s", ErrBadSignatureAlgorithm, csr.SignatureAlgorithm)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadCSR, err)
	}
	if len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: email address names (%s) are not issued", ErrBadCSR, strings.Join(csr.EmailAddresses, ", "))
	}
	if len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: URI names (%s) are not issued", ErrBadCSR, csr.URIs[0])
	}
	out := &CheckedCSR{PublicKey: csr.PublicKey}
	for _, n := range csr.DNSNames {
		c, err := NormalizeDNSName(n)
		if err != nil {
			return nil, err
		}
		out.DNSNames = append(out.DNSNames, c)
	}
	for _, ip := range csr.IPAddresses {
		c, err := NormalizeIP(ip)
		if err != nil {
			return nil, err
		}
		out.IPAddresses = append(out.IPAddresses, c)
	}
	slices.Sort(out.DNSNames)
	out.DNSNames = slices.Compact(out.DNSNames)
	sortIPs(out.IPAddresses)
	out.IPAddresses = slices.CompactFunc(out.IPAddresses, net.IP.Equal)

	if cn := csr.Subject.CommonName; cn != "" {
		out.CommonName = strings.ToLower(cn)
		if !slices.Contains(out.DNSNames, out.CommonName) && !slices.ContainsFunc(out.IPAddresses, func(ip net.IP) bool { return ip.String() == out.CommonName }) {
			return nil, fmt.Errorf("%w: common name %q is not among the subject alternative names", ErrBadCSR, cn)
		}
	}
	total := len(out.DNSNames) + len(out.IPAddresses)
	switch {
	case total == 0:
		return nil, fmt.Errorf("%w: no DNS names or IP addresses", ErrBadCSR)
	case maxNames > 0 && total > maxNames:
		return nil, fmt.Errorf("%w: %d names, more than the %d allowed", ErrBadCSR, total, maxNames)
	}
	return out, nil
}

func sortIPs(ips []net.IP) {
	slices.SortFunc(ips, func(a, b net.IP) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return bytes.Compare(a, b)
	})
}

// SameNames reports whether the CSR names exactly the given (canonical,
// possibly unsorted) names: no more, no fewer. An authorised IP address that
// no certificate may carry is refused as such first.
func (c *CheckedCSR) SameNames(dnsNames []string, ips []net.IP) error {
	for _, ip := range ips {
		if _, err := NormalizeIP(ip); err != nil {
			return err
		}
	}
	got, want := NamesOf(c.DNSNames, c.IPAddresses), NamesOf(dnsNames, ips)
	if !got.Equal(want) {
		return fmt.Errorf("%w: CSR has %s; authorised %s", ErrNamesMismatch, got, want)
	}
	return nil
}
