package validation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// ACMETLS1Protocol is the ALPN protocol of tls-alpn-01 (RFC 8737 §6.2).
const ACMETLS1Protocol = "acme-tls/1"

var (
	// oidACMEIdentifier is id-pe-acmeIdentifier (RFC 8737 §6.1), the critical
	// extension that carries SHA-256(key authorization) in the challenge
	// certificate.
	oidACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// validateTLSALPN01 connects to the identifier on the TLS port offering only
// acme-tls/1, with SNI the name (or, for an IP, its reverse-DNS name, RFC 8738
// §6), and checks the certificate the server presents (RFC 8737 §3). The chain
// is not verified: the certificate is self-signed by design.
func (v *Validator) validateTLSALPN01(ctx context.Context, at *attempt, t target, keyAuth string) *Problem {
	sni := t.name
	if t.isIP() {
		arpa, err := dns.ReverseAddr(t.ip.String())
		if err != nil {
			return newProblem(ProblemServerInternal, err, "could not build the reverse-DNS name of %s", t.ip)
		}
		sni = strings.TrimSuffix(arpa, ".")
	}
	// Through the attempt, like http-01: one resolution, filtered addresses
	// only, and no resolving by anything else.
	conn, addr, prob, ce := at.dial(ctx, t.name, t.ip, v.cfg.TLSPort)
	if prob != nil {
		return prob
	}
	if ce != nil {
		return newProblem(ProblemConnection, ce, "Connecting for tls-alpn-01 to %s: %s", t, ce.detail())
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		NextProtos:         []string{ACMETLS1Protocol},
		InsecureSkipVerify: true, //nolint:gosec // the certificate is checked below, not its chain
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		if isTimeout(err) {
			return newProblem(ProblemConnection, err, "tls-alpn-01 with %s: timeout during the TLS handshake with %s", t, addr)
		}
		if text, ok := tlsErrText(err); ok {
			return newProblem(ProblemTLS, err, "tls-alpn-01 with %s: TLS handshake with %s failed: %s", t, addr, text)
		}
		return newProblem(ProblemTLS, err, "tls-alpn-01 with %s: TLS handshake with %s failed: %s", t, addr, netErrText(err))
	}
	defer tc.Close()
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ACMETLS1Protocol {
		return newProblem(ProblemUnauthorized, nil, "tls-alpn-01 with %s: %s did not negotiate the ALPN protocol %q", t, addr, ACMETLS1Protocol)
	}
	if len(cs.PeerCertificates) == 0 {
		return newProblem(ProblemTLS, nil, "tls-alpn-01 with %s: %s presented no certificate", t, addr)
	}
	if p := checkChallengeCert(cs.PeerCertificates[0], t, keyAuth); p != nil {
		return newProblem(p.Type, p.Err, "tls-alpn-01 with %s: the certificate from %s %s", t, addr, p.Detail)
	}
	return nil
}

// checkChallengeCert applies RFC 8737 §3 to the leaf: exactly one subject
// alternative name, equal to the identifier, and a critical acmeIdentifier
// extension holding an OCTET STRING of SHA-256(key authorization). The
// returned detail completes "the certificate from <addr> ...".
func checkChallengeCert(cert *x509.Certificate, t target, keyAuth string) *Problem {
	var acmeExt, sanExt *[]byte
	var acmeCritical bool
	for i := range cert.Extensions {
		ext := &cert.Extensions[i]
		switch {
		case ext.Id.Equal(oidACMEIdentifier):
			acmeExt, acmeCritical = &ext.Value, ext.Critical
		case ext.Id.Equal(oidSubjectAltName):
			sanExt = &ext.Value
		}
	}
	if acmeExt == nil {
		return newProblem(ProblemUnauthorized, nil, "has no acmeIdentifier extension")
	}
	if sanExt == nil {
		return newProblem(ProblemIncorrectResponse, nil, "has no subjectAltName extension")
	}
	if p := checkSAN(*sanExt, t); p != nil {
		return p
	}
	if !acmeCritical {
		return newProblem(ProblemIncorrectResponse, nil, "has an acmeIdentifier extension that is not marked critical")
	}
	var digest []byte
	rest, err := asn1.Unmarshal(*acmeExt, &digest)
	if err != nil || len(rest) != 0 {
		return newProblem(ProblemIncorrectResponse, err, "has a malformed acmeIdentifier extension (it must be an OCTET STRING)")
	}
	want := sha256.Sum256([]byte(keyAuth))
	if subtle.ConstantTimeCompare(digest, want[:]) != 1 {
		return newProblem(ProblemIncorrectResponse, nil, "has an acmeIdentifier extension whose digest does not match this challenge's key authorization")
	}
	return nil
}

// checkSAN parses the subjectAltName extension itself, so that every
// GeneralName counts, including kinds crypto/x509 does not expose.
func checkSAN(der []byte, t target) *Problem {
	malformed := newProblem(ProblemIncorrectResponse, nil, "has a malformed subjectAltName extension")
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil || len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return malformed
	}
	var names []asn1.RawValue
	for data := seq.Bytes; len(data) > 0; {
		var gn asn1.RawValue
		if data, err = asn1.Unmarshal(data, &gn); err != nil {
			return malformed
		}
		names = append(names, gn)
	}
	if len(names) != 1 {
		return newProblem(ProblemIncorrectResponse, nil, "has %d subjectAltName entries; it must have exactly one, %s", len(names), t)
	}
	gn := names[0]
	const dNSName, iPAddress = 2, 7
	if gn.Class == asn1.ClassContextSpecific {
		switch {
		case gn.Tag == dNSName && !t.isIP() && strings.EqualFold(string(gn.Bytes), t.name):
			return nil
		case gn.Tag == iPAddress && t.isIP():
			if ip, ok := netip.AddrFromSlice(gn.Bytes); ok && ip == t.ip.WithZone("") {
				return nil
			}
		}
		if gn.Tag == dNSName {
			return newProblem(ProblemIncorrectResponse, nil, "is for %s, not %s", quote(string(gn.Bytes), 255), t)
		}
		if gn.Tag == iPAddress {
			if ip, ok := netip.AddrFromSlice(gn.Bytes); ok {
				return newProblem(ProblemIncorrectResponse, nil, "is for %s, not %s", ip, t)
			}
		}
	}
	return newProblem(ProblemIncorrectResponse, nil, "has a subjectAltName that is not the identifier %s", t)
}
