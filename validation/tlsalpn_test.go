package validation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// certSpec describes a tls-alpn-01 challenge certificate, right by default.
type certSpec struct {
	dnsNames    []string
	ips         []net.IP
	keyAuth     string
	noExtension bool
	nonCritical bool
	rawValue    []byte // replaces the extension value when set
}

func challengeCert(t *testing.T, spec certSpec) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ACME challenge"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     spec.dnsNames,
		IPAddresses:  spec.ips,
	}
	if !spec.noExtension {
		value := spec.rawValue
		if value == nil {
			sum := sha256.Sum256([]byte(spec.keyAuth))
			if value, err = asn1.Marshal(sum[:]); err != nil {
				t.Fatal(err)
			}
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidACMEIdentifier, Critical: !spec.nonCritical, Value: value}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// alpnServer is a TLS server on 127.0.0.1 that completes handshakes with a
// given certificate and ALPN list, and records the SNI it was sent.
type alpnServer struct {
	port int
	mu   sync.Mutex
	snis []string
}

func (s *alpnServer) lastSNI() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.snis) == 0 {
		return ""
	}
	return s.snis[len(s.snis)-1]
}

func startALPN(t *testing.T, cert tls.Certificate, protos []string) *alpnServer {
	t.Helper()
	s := &alpnServer{}
	cfg := &tls.Config{
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			s.snis = append(s.snis, hello.ServerName)
			s.mu.Unlock()
			return &cert, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				// Wait for the client to hang up.
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	s.port = portOf(t, ln.Addr().String())
	return s
}

func alpnSetup(t *testing.T, spec certSpec, protos []string) (*Validator, *alpnServer) {
	t.Helper()
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	s := startALPN(t, challengeCert(t, spec), protos)
	v := newTestValidator(t, d, func(c *Config) { c.TLSPort = s.port })
	return v, s
}

var acmeProtos = []string{ACMETLS1Protocol}

func TestTLSALPN01Success(t *testing.T) {
	v, s := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, keyAuth: testKeyAuth}, acmeProtos)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth))
	if s.lastSNI() != "example.test" {
		t.Errorf("SNI %q, want example.test", s.lastSNI())
	}
}

func TestTLSALPN01SANIsCaseInsensitive(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"Example.TEST"}, keyAuth: testKeyAuth}, acmeProtos)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth))
}

func TestTLSALPN01NoALPN(t *testing.T) {
	// A server that ignores ALPN: the handshake completes without acme-tls/1.
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, keyAuth: testKeyAuth}, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemUnauthorized, `did not negotiate the ALPN protocol "acme-tls/1"`)
}

func TestTLSALPN01WrongALPN(t *testing.T) {
	// A server that speaks only other protocols refuses the handshake.
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, keyAuth: testKeyAuth}, []string{"h2", "http/1.1"})
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemTLS, "TLS handshake with 127.0.0.1:", "no application protocol")
}

func TestTLSALPN01MissingExtension(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, noExtension: true}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemUnauthorized, "has no acmeIdentifier extension")
}

func TestTLSALPN01NonCriticalExtension(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, keyAuth: testKeyAuth, nonCritical: true}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "not marked critical")
}

func TestTLSALPN01WrongSAN(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"other.test"}, keyAuth: testKeyAuth}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, `is for "other.test", not example.test`)
}

func TestTLSALPN01ExtraSAN(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test", "other.test"}, keyAuth: testKeyAuth}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "2 subjectAltName entries", "exactly one")
}

func TestTLSALPN01WrongDigest(t *testing.T) {
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, keyAuth: testToken + ".someone-elses-thumbprint"}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "digest does not match")
}

func TestTLSALPN01DigestNotAnOctetString(t *testing.T) {
	sum := sha256.Sum256([]byte(testKeyAuth))
	raw := sum[:] // the bare digest, without the OCTET STRING wrapping
	v, _ := alpnSetup(t, certSpec{dnsNames: []string{"example.test"}, rawValue: raw}, acmeProtos)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "malformed acmeIdentifier extension")
}

func TestTLSALPN01IPIdentifier(t *testing.T) {
	s := startALPN(t, challengeCert(t, certSpec{ips: []net.IP{net.ParseIP("127.0.0.1")}, keyAuth: testKeyAuth}), acmeProtos)
	v := newTestValidator(t, startDNS(t), func(c *Config) { c.TLSPort = s.port })
	wantOK(t, v.Validate(bg, ipIdent("127.0.0.1"), ChallengeTLSALPN01, testToken, testKeyAuth))
	if got, want := s.lastSNI(), "1.0.0.127.in-addr.arpa"; got != want {
		t.Errorf("SNI %q, want the reverse-DNS name %q (RFC 8738 §6)", got, want)
	}
}

func TestTLSALPN01IPIdentifierWithDNSSAN(t *testing.T) {
	s := startALPN(t, challengeCert(t, certSpec{dnsNames: []string{"127.0.0.1.example"}, keyAuth: testKeyAuth}), acmeProtos)
	v := newTestValidator(t, startDNS(t), func(c *Config) { c.TLSPort = s.port })
	err := v.Validate(bg, ipIdent("127.0.0.1"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "not 127.0.0.1")
}

func TestTLSALPN01PlainHTTPOnTheTLSPort(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	s := startHTTP(t, false, serveKeyAuth(testKeyAuth))
	v := newTestValidator(t, d, func(c *Config) { c.TLSPort = s.port })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemTLS, "did not answer with TLS")
}

func TestTLSALPN01ConnectionRefused(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	v := newTestValidator(t, d, func(c *Config) { c.TLSPort = closedPort(t) })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "connection refused by 127.0.0.1:")
}

func TestTLSALPN01WildcardIsMalformed(t *testing.T) {
	v := newTestValidator(t, startDNS(t), nil)
	err := v.Validate(bg, dnsIdent("*.example.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemMalformed, "use dns-01")
}

func TestCheckSANHostileEncodings(t *testing.T) {
	tg := target{name: "example.test"}
	for _, der := range [][]byte{
		nil,
		{0x30},                   // truncated
		{0x30, 0x00},             // no names
		{0x31, 0x00},             // SET, not SEQUENCE
		{0x30, 0x02, 0x82, 0x10}, // length past the end
		{0x30, 0x00, 0x00},       // trailing data
	} {
		if p := checkSAN(der, tg); p == nil || p.Type != ProblemIncorrectResponse {
			t.Errorf("checkSAN(%x) = %v, want an incorrectResponse problem", der, p)
		}
	}
}
