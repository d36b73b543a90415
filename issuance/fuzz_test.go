package issuance_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

// FuzzCheckCSR: CheckCSR never panics on any DER; every refusal is one of the
// typed errors the API maps to a problem type; and what it accepts is what a
// CA may sign: a self-signature that verifies under an allowed algorithm, 1 to
// maxNames names, DNS names already canonical, sorted and unique, IPs of 4 or
// 16 bytes that are neither unspecified nor IPv4-mapped, and a common name
// that is one of them.
func FuzzCheckCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	key384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tmpl := range []*x509.CertificateRequest{
		{DNSNames: []string{"example.com"}},
		{Subject: pkix.Name{CommonName: "WWW.Example.com"}, DNSNames: []string{"www.example.com", "example.com", "example.com"}},
		{DNSNames: []string{"*.example.com"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("::ffff:192.0.2.1"), net.ParseIP("2001:db8::1")}},
		{Subject: pkix.Name{CommonName: "192.0.2.7"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.7")}},
		{IPAddresses: []net.IP{net.IPv4zero}},
		{DNSNames: []string{"a..b", "-a.com", "xn--ab.com", "1.2.3.4"}},
		{EmailAddresses: []string{"a@example.com"}, DNSNames: []string{"example.com"}},
		{Subject: pkix.Name{CommonName: "other.example"}, DNSNames: []string{"example.com"}},
		{},
	} {
		for _, k := range []*ecdsa.PrivateKey{key, key384} {
			der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(der, 0)
			f.Add(der, 1)
			f.Add(der[:len(der)/2], 100)
		}
	}
	f.Add([]byte{0x30, 0x00}, 1)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, der []byte, maxNames int) {
		maxNames = maxNames % 200
		c, err := issuance.CheckCSR(der, maxNames)
		if err != nil {
			if !errors.Is(err, issuance.ErrBadCSR) && !errors.Is(err, issuance.ErrBadSignatureAlgorithm) &&
				!errors.Is(err, issuance.ErrBadPublicKey) && !errors.Is(err, issuance.ErrRejectedName) {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("accepted a CSR that does not parse: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
		if csr.SignatureAlgorithm == x509.SHA1WithRSA || csr.SignatureAlgorithm == x509.ECDSAWithSHA1 || csr.SignatureAlgorithm == x509.MD5WithRSA {
			t.Fatalf("accepted signature algorithm %s", csr.SignatureAlgorithm)
		}
		if err := issuance.CheckPublicKey(c.PublicKey); err != nil {
			t.Fatalf("accepted a key CheckPublicKey refuses: %v", err)
		}
		total := len(c.DNSNames) + len(c.IPAddresses)
		if total == 0 || (maxNames > 0 && total > maxNames) {
			t.Fatalf("accepted %d names with maxNames %d", total, maxNames)
		}
		if !slices.IsSorted(c.DNSNames) || len(slices.Compact(slices.Clone(c.DNSNames))) != len(c.DNSNames) {
			t.Fatalf("names not sorted and unique: %q", c.DNSNames)
		}
		for _, n := range c.DNSNames {
			if got, err := issuance.NormalizeDNSName(n); err != nil || got != n {
				t.Fatalf("name %q is not canonical: %q, %v", n, got, err)
			}
		}
		for _, ip := range c.IPAddresses {
			if (len(ip) != 4 && len(ip) != 16) || ip.IsUnspecified() || (len(ip) == 16 && ip.To4() != nil) {
				t.Fatalf("IP %v (%d bytes) is not canonical", ip, len(ip))
			}
		}
		if c.CommonName != "" && !slices.Contains(c.DNSNames, c.CommonName) &&
			!slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.String() == c.CommonName }) {
			t.Fatalf("common name %q is not among the names", c.CommonName)
		}
		if err := c.SameNames(c.DNSNames, c.IPAddresses); err != nil {
			t.Fatalf("SameNames of its own names: %v", err)
		}
	})
}
