package issuance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/anvil-pki/anvil/hsm"
)

// Request asks for one certificate. DNSNames and IPAddresses are what the
// caller authorised; the CSR must name exactly those.
type Request struct {
	CSR         []byte // DER
	DNSNames    []string
	IPAddresses []net.IP
	Profile     string // "" for the default profile
	Requester   string // opaque, recorded with the serial (e.g. "acct/1 order/2")
}

// Issued is a signed, verified and recorded certificate.
type Issued struct {
	DER     []byte
	Cert    *x509.Certificate
	Chain   [][]byte // DER issuer certificates to serve after the leaf
	Issuer  string
	Profile string
}

// NamePolicy is the issuance service's own say over names, consulted after the
// CSR is checked: it lets a signer refuse names its caller should never have
// authorised.
type NamePolicy interface {
	CheckNames(dnsNames []string, ips []net.IP) error
}

// ServiceConfig assembles a Service.
type ServiceConfig struct {
	Issuers        []*Issuer
	Profiles       []*Profile
	DefaultProfile string // defaults to the first profile
	Ledger         Ledger
	Policy         NamePolicy // optional
	// SerialPrefix is the first byte of every serial (1..127): it keeps serials
	// positive and of fixed length, and can tell CA instances apart.
	SerialPrefix byte
	Now          func() time.Time
	Logger       *slog.Logger // audit events go here
	Observer     Observer     // optional: metrics
}

// Service issues certificates.
type Service struct {
	issuers        []*Issuer
	profiles       map[string]*Profile
	profileNames   []string
	defaultProfile string
	ledger         Ledger
	policy         NamePolicy
	serialPrefix   byte
	now            func() time.Time
	log            *slog.Logger
	obs            Observer
}

// NewService checks the configuration and returns a Service.
func NewService(c ServiceConfig) (*Service, error) {
	if len(c.Issuers) == 0 {
		return nil, errors.New("issuance: no issuers")
	}
	if len(c.Profiles) == 0 {
		return nil, errors.New("issuance: no profiles")
	}
	if c.Ledger == nil {
		return nil, errors.New("issuance: no ledger: nothing may be signed without a record")
	}
	if c.SerialPrefix == 0 {
		c.SerialPrefix = 1
	}
	if c.SerialPrefix > 0x7f {
		return nil, fmt.Errorf("issuance: serial prefix %#x must be between 0x01 and 0x7f", c.SerialPrefix)
	}
	s := &Service{
		issuers:      c.Issuers,
		profiles:     map[string]*Profile{},
		ledger:       c.Ledger,
		policy:       c.Policy,
		serialPrefix: c.SerialPrefix,
		now:          c.Now,
		log:          c.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.obs = c.Observer; s.obs == nil {
		s.obs = noObserver{}
	}
	for _, p := range c.Profiles {
		if _, dup := s.profiles[p.Name]; dup {
			return nil, fmt.Errorf("issuance: profile %q defined twice", p.Name)
		}
		s.profiles[p.Name] = p
		s.profileNames = append(s.profileNames, p.Name)
	}
	s.defaultProfile = c.DefaultProfile
	if s.defaultProfile == "" {
		s.defaultProfile = c.Profiles[0].Name
	}
	if _, ok := s.profiles[s.defaultProfile]; !ok {
		return nil, fmt.Errorf("issuance: default profile %q is not defined", s.defaultProfile)
	}
	return s, nil
}

// Profiles returns the profiles, default first, for ACME's meta.profiles.
func (s *Service) Profiles() []*Profile {
	names := slices.Clone(s.profileNames)
	sort.SliceStable(names, func(i, j int) bool { return names[i] == s.defaultProfile && names[j] != s.defaultProfile })
	out := make([]*Profile, len(names))
	for i, n := range names {
		out[i] = s.profiles[n]
	}
	return out
}

// Issuers returns the configured issuers.
func (s *Service) Issuers() []*Issuer { return s.issuers }

// Issue checks, lints, records, signs, verifies and records one certificate.
func (s *Service) Issue(ctx context.Context, req Request) (_ *Issued, err error) {
	var p *Prepared
	start := time.Now()
	defer func() { s.observeIssue(req, p, err, start) }()
	if p, err = s.Prepare(ctx, req); err != nil {
		return nil, err
	}
	return p.Sign(ctx)
}

// Prepared is a certificate that has been checked and linted and whose serial
// and intent are on record. It is the only way to an issuer's key, and it can be
// signed once.
type Prepared struct {
	svc       *Service
	issuer    *Issuer
	profile   *Profile
	serial    *big.Int
	lintDER   []byte
	names     []string
	requester string
	used      atomic.Bool
}

// Prepare does everything before the HSM signature: it checks the CSR and the
// names, builds and lints the certificate, and reserves its serial with the
// lint certificate as the intent to sign. A failure at any step means the HSM is
// never asked to sign.
func (s *Service) Prepare(ctx context.Context, req Request) (*Prepared, error) {
	name := req.Profile
	if name == "" {
		name = s.defaultProfile
	}
	profile, ok := s.profiles[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (have %v)", ErrUnknownProfile, name, s.profileNames)
	}
	csr, err := CheckCSR(req.CSR, profile.MaxNames)
	if err != nil {
		return nil, err
	}
	if err := csr.SameNames(req.DNSNames, req.IPAddresses); err != nil {
		return nil, err
	}
	if s.policy != nil {
		if err := s.policy.CheckNames(csr.DNSNames, csr.IPAddresses); err != nil {
			return nil, err
		}
	}
	issuer := s.issuerFor(csr.PublicKey)
	// A token known to be down fails the request here, before a serial is
	// reserved or anything written: the answer is the same as after a failed
	// signature, without a ledger row to show for it.
	if !issuer.available() {
		return nil, fmt.Errorf("%w: the HSM token of issuer %s is down", ErrSignerUnavailable, issuer.name)
	}
	serial, err := newSerial(s.serialPrefix)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	notBefore := now.Add(-profile.Backdate)
	// RFC 5280 validity is inclusive of both ends: subtract a second so that a
	// 90-day profile gives exactly 90 days.
	notAfter := notBefore.Add(profile.Validity - time.Second)

	lintStart := time.Now()
	shard := issuer.urls.crlShardOf(serial)
	tmpl := buildTemplate(profile, issuer, csr, serial, shard, notBefore, notAfter)
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.lintParent, csr.PublicKey, issuer.lintSigner)
	if err != nil {
		return nil, fmt.Errorf("issuance: build certificate: %w", err)
	}
	// Lint before the intent: a certificate that fails lint is never recorded
	// as one the HSM may sign.
	if err := profile.linter.check(lintDER); err != nil {
		return nil, err
	}
	s.phase(PhaseLint, issuer.name, lintStart)
	if err := s.ledger.RecordIntent(ctx, SerialReservation{
		Serial: serial, Issuer: issuer.name, Profile: profile.Name,
		Requester: req.Requester, Created: now, Expires: notAfter, LintCert: lintDER,
		CRLShard: shard,
	}); err != nil {
		return nil, fmt.Errorf("%w: record intent: %w", ErrLedger, err)
	}
	return &Prepared{
		svc: s, issuer: issuer, profile: profile, serial: serial, lintDER: lintDER,
		names: append(slices.Clone(csr.DNSNames), ipStrings(csr.IPAddresses)...), requester: req.Requester,
	}, nil
}

// Serial is the prepared certificate's serial number.
func (p *Prepared) Serial() *big.Int { return new(big.Int).Set(p.serial) }

// LintCertificate is the DER certificate that was linted and recorded.
func (p *Prepared) LintCertificate() []byte { return p.lintDER }

// Sign signs the linted TBS with the issuer's HSM key, checks the result, and
// records the certificate before returning it. It works once.
func (p *Prepared) Sign(ctx context.Context) (*Issued, error) {
	if !p.used.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: serial %x", ErrAlreadySigned, p.serial)
	}
	signStart := time.Now()
	der, err := signLinted(ctx, p.issuer.signer, p.issuer.hash, p.lintDER)
	p.svc.phase(PhaseSign, p.issuer.name, signStart)
	if err != nil {
		// The hsm layer verifies every signature too: one that did not verify
		// left no valid signature, like one the HSM refused, but says more.
		reason := NotSignedHSMError
		if errors.Is(err, hsm.ErrSignatureCheckFailed) {
			reason = NotSignedBadSignature
		}
		p.notSigned(ctx, reason)
		if errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, hsm.ErrBusy) {
			return nil, fmt.Errorf("%w: sign serial %x with issuer %s: %w", ErrSignerUnavailable, p.serial, p.issuer.name, err)
		}
		return nil, fmt.Errorf("issuance: sign serial %x with issuer %s: %w", p.serial, p.issuer.name, err)
	}
	cert, err := p.verify(der)
	if err != nil {
		p.notSigned(ctx, NotSignedBadSignature)
		return nil, err
	}
	storeStart := time.Now()
	if err := p.svc.ledger.RecordIssued(ctx, p.serial, der); err != nil {
		// A valid signature exists and is not on record: it is never
		// returned, and its serial is published as revoked.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if aerr := p.svc.ledger.RecordAbandoned(actx, p.serial); aerr != nil {
			p.svc.log.Error("ledger outcome not recorded; the intent stays open until it is abandoned",
				"serial", fmt.Sprintf("%x", p.serial), "outcome", "abandoned", "error", aerr)
		}
		return nil, fmt.Errorf("%w: record issued certificate %x: %w", ErrLedger, p.serial, err)
	}
	p.svc.phase(PhaseStore, p.issuer.name, storeStart)
	p.svc.log.Info("certificate issued", "audit", "issuance", "serial", fmt.Sprintf("%x", p.serial),
		"issuer", p.issuer.name, "profile", p.profile.Name, "names", p.names, "requester", p.requester,
		"not_before", cert.NotBefore, "not_after", cert.NotAfter)
	return &Issued{DER: der, Cert: cert, Chain: p.issuer.chain, Issuer: p.issuer.name, Profile: p.profile.Name}, nil
}

// verify checks what the HSM returned: it parses, its TBS is the linted one,
// and its signature verifies with the issuer's key (an HSM can return a
// corrupted signature as success).
func (p *Prepared) verify(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: signed certificate does not parse: %v", ErrSignature, err)
	}
	if err := sameTBS(cert, p.lintDER); err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(p.issuer.cert); err != nil {
		return nil, fmt.Errorf("%w: serial %x: %v", ErrSignature, p.serial, err)
	}
	return cert, nil
}

// notSigned closes the intent as not signed. It runs even when ctx has ended
// (a timed-out signature is exactly when it matters). If it cannot be written
// the intent stays open and is abandoned later, which publishes the serial as
// revoked: safe, if noisy.
func (p *Prepared) notSigned(ctx context.Context, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.svc.ledger.RecordNotSigned(ctx, p.serial, reason); err != nil {
		p.svc.log.Error("ledger outcome not recorded; the intent stays open until it is abandoned",
			"serial", fmt.Sprintf("%x", p.serial), "outcome", "not_signed", "reason", reason, "error", err)
	}
}

// SignerAvailable says, from the token's last known state and without calling
// the module, whether the issuer that would sign for this CSR can sign now:
// ErrSignerUnavailable if its token is known to be down. A CSR that does not
// parse is left to Prepare to refuse.
func (s *Service) SignerAvailable(csrDER []byte) error {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil
	}
	if iss := s.issuerFor(csr.PublicKey); !iss.available() {
		return fmt.Errorf("%w: the HSM token of issuer %s is down", ErrSignerUnavailable, iss.name)
	}
	return nil
}

// issuerFor picks an issuer whose key is of the same family as the subject's
// (ECDSA for ECDSA, RSA for RSA), or else the first issuer.
func (s *Service) issuerFor(pub crypto.PublicKey) *Issuer {
	for _, iss := range s.issuers {
		switch pub.(type) {
		case *ecdsa.PublicKey:
			if _, ok := iss.cert.PublicKey.(*ecdsa.PublicKey); ok {
				return iss
			}
		case *rsa.PublicKey:
			if _, ok := iss.cert.PublicKey.(*rsa.PublicKey); ok {
				return iss
			}
		}
	}
	return s.issuers[0]
}

func buildTemplate(p *Profile, iss *Issuer, csr *CheckedCSR, serial *big.Int, crlShard int, notBefore, notAfter time.Time) *x509.Certificate {
	ku := p.KeyUsage
	if _, isRSA := csr.PublicKey.(*rsa.PublicKey); !isRSA {
		ku &^= x509.KeyUsageKeyEncipherment // meaningless, and refused by lints, for ECDSA keys
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           p.ExtKeyUsage,
		BasicConstraintsValid: true,
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
		Policies:              p.Policies,
		SignatureAlgorithm:    iss.sigAlg,
	}
	if p.IncludeCommonName {
		t.Subject = pkix.Name{CommonName: commonName(csr)}
	}
	if u := iss.urls.OCSPURL; u != "" {
		t.OCSPServer = []string{u}
	}
	if u := iss.urls.IssuerURL; u != "" {
		t.IssuingCertificateURL = []string{u}
	}
	if u := iss.urls.CRLShardURL(crlShard); u != "" {
		t.CRLDistributionPoints = []string{u}
	}
	return t
}

// commonName keeps the CSR's CN, or takes the first name that fits in 64
// characters (the CN's upper bound); "" when none does.
func commonName(csr *CheckedCSR) string {
	if csr.CommonName != "" {
		return csr.CommonName
	}
	for _, n := range csr.DNSNames {
		if len(n) <= 64 {
			return n
		}
	}
	if len(csr.IPAddresses) > 0 {
		return csr.IPAddresses[0].String()
	}
	return ""
}

// serialRandomBytes is the random part of a serial: 128 bits from crypto/rand.
const serialRandomBytes = 16

// newSerial returns prefix || 128 random bits: positive, 17 octets, unique with
// overwhelming probability (and by the ledger's constraint for certain).
func newSerial(prefix byte) (*big.Int, error) {
	b := make([]byte, 1+serialRandomBytes)
	b[0] = prefix
	if _, err := rand.Read(b[1:]); err != nil {
		return nil, fmt.Errorf("issuance: serial: %w", err)
	}
	return new(big.Int).SetBytes(b), nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// Chains returns the chains served after a leaf from the named issuer: the
// default first, then any alternates.
func (s *Service) Chains(issuer string) ([][][]byte, bool) {
	for _, iss := range s.issuers {
		if iss.name == issuer {
			return iss.Chains(), true
		}
	}
	return nil, false
}
