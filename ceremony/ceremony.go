// Package ceremony runs offline key ceremonies from one YAML file each: key
// pairs generated inside the HSM, self-signed roots, intermediates, cross-
// certificates, CRLs and delegated OCSP responder certificates, each with a
// human-readable transcript that witnesses can sign.
//
// A ceremony checks everything it can before it touches the HSM: the file is
// decoded strictly, validity is held to configurable limits, no output file may
// exist, every input must parse, and a signing key must match its issuer
// certificate. Everything it signs goes through issuance.SignCertificate or
// issuance.SignRevocationList: linted with a throwaway key first, the real
// signature verified, the signed TBS compared with the linted one, and linted
// again. It never reads a private key or writes a PIN anywhere.
package ceremony

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
)

// Options adjust Run for tests and for the command line.
type Options struct {
	Out     io.Writer              // the transcript is echoed here as it is written
	Ask     func() (string, error) // reads the PIN for pin.prompt
	Now     func() time.Time       // the clock, for the transcript
	Version string                 // Anvil's version, for the transcript
}

// Check decodes and validates a ceremony file without touching an HSM or any
// file it names: for reviewing a ceremony before the day.
func Check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ceremony: %w", err)
	}
	var cfg Config
	if err := config.Decode(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Run performs the ceremony described by the file at path.
func Run(ctx context.Context, path string, opts Options) (err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ceremony: %w", err)
	}
	var cfg Config
	if err := config.Decode(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(raw)

	c := &run{cfg: &cfg, opts: opts, ctx: ctx, tr: newTranscript(opts.Out)}
	c.tr.header(cfg.Type, path, hex.EncodeToString(sum[:]), opts.Now(), opts.Version)

	// Refusals that need no HSM come first, and write nothing.
	if err := c.checkOutputs(); err != nil {
		return err
	}
	if err := c.loadInputs(); err != nil {
		return err
	}
	c.tr.step("checked the configuration, the inputs, and that no output file exists")

	// From here on the transcript file is written on success, and on a failure
	// after the token was changed (a key generated), so that such a failure is
	// on record too. A refusal before that leaves the output folder untouched;
	// its transcript was echoed.
	defer func() {
		c.tr.line("")
		if err != nil {
			c.tr.line("CEREMONY FAILED: %v", err)
		} else {
			c.tr.line("ceremony completed")
		}
		c.tr.footer(opts.Now())
		if err == nil || c.tokenChanged {
			if werr := writeExclusive(cfg.Transcript, c.tr.bytes()); werr != nil && err == nil {
				err = fmt.Errorf("write transcript: %w", werr)
			}
		}
	}()

	pin := hsm.PINSource{File: cfg.HSM.PIN.File, Env: cfg.HSM.PIN.Env}
	if cfg.HSM.PIN.Prompt {
		if opts.Ask == nil {
			return errors.New("hsm.pin.prompt is set but there is no terminal to ask on")
		}
		pin = hsm.PINSource{Ask: opts.Ask}
	}
	tok, err := hsm.Open(hsm.Config{ModulePath: cfg.HSM.Module, TokenLabel: cfg.HSM.Token, TokenSerial: cfg.HSM.Serial, PIN: pin})
	if err != nil {
		return err
	}
	defer tok.Close()
	c.tok = tok
	c.tr.step("opened token %q through %s and logged in (PIN from %s)", tok.Label(), cfg.HSM.Module, pin)

	switch cfg.Type {
	case TypeKey:
		return c.keyCeremony()
	case TypeRoot:
		return c.rootCeremony()
	case TypeIntermediate:
		return c.intermediateCeremony()
	case TypeCross:
		return c.crossCeremony()
	case TypeCRL:
		return c.crlCeremony()
	case TypeOCSPSigner:
		return c.ocspSignerCeremony()
	}
	return fmt.Errorf("type %q not handled", cfg.Type)
}

// run is the state of one ceremony.
type run struct {
	cfg  *Config
	opts Options
	ctx  context.Context
	tr   *transcript
	tok  *hsm.Token

	issuer  *x509.Certificate // inputs.issuer_certificate
	subject crypto.PublicKey  // inputs.public_key
	toCross *x509.Certificate // inputs.certificate
	revoked []x509.RevocationListEntry

	tokenChanged bool // a key was generated
}

func (c *run) outputs() map[string]string {
	o := c.cfg.Outputs
	all := map[string]string{
		"transcript":          c.cfg.Transcript,
		"outputs.public_key":  o.PublicKey,
		"outputs.key_info":    o.KeyInfo,
		"outputs.certificate": o.Certificate,
		"outputs.crl":         o.CRL,
	}
	for k, v := range all {
		if v == "" {
			delete(all, k)
		}
	}
	return all
}

// checkOutputs refuses to start if any output exists or cannot be created, or
// if two outputs are the same file.
func (c *run) checkOutputs() error {
	var problems config.Problems
	seen := map[string]string{}
	for field, path := range c.outputs() {
		abs, _ := filepath.Abs(path)
		if other, dup := seen[abs]; dup {
			problems.Addf(field, "%s is also %s", path, other)
		}
		seen[abs] = field
		if _, err := os.Lstat(path); err == nil {
			problems.Addf(field, "%s already exists; a ceremony never overwrites", path)
		} else if !errors.Is(err, os.ErrNotExist) {
			problems.Addf(field, "%v", err)
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			problems.Addf(field, "directory %s does not exist", filepath.Dir(path))
		}
	}
	return problems.Err()
}

func (c *run) loadInputs() error {
	in := c.cfg.Inputs
	var err error
	if in.IssuerCertificate != "" {
		if c.issuer, err = config.ReadCertificate(in.IssuerCertificate); err != nil {
			return fmt.Errorf("inputs.issuer_certificate: %w", err)
		}
		if !c.issuer.IsCA {
			return fmt.Errorf("inputs.issuer_certificate: %s is not a CA certificate", in.IssuerCertificate)
		}
	}
	if in.PublicKey != "" {
		if c.subject, err = readPublicKey(in.PublicKey); err != nil {
			return fmt.Errorf("inputs.public_key: %w", err)
		}
		if err := issuance.CheckPublicKey(c.subject); err != nil {
			return fmt.Errorf("inputs.public_key: %w", err)
		}
	}
	if in.Certificate != "" {
		if c.toCross, err = config.ReadCertificate(in.Certificate); err != nil {
			return fmt.Errorf("inputs.certificate: %w", err)
		}
		if !c.toCross.IsCA {
			return fmt.Errorf("inputs.certificate: %s is not a CA certificate", in.Certificate)
		}
	}
	for i, r := range c.cfg.CRL.Revoked {
		field := fmt.Sprintf("crl.revoked[%d]", i)
		e := x509.RevocationListEntry{}
		if r.Certificate != "" {
			cert, err := config.ReadCertificate(r.Certificate)
			if err != nil {
				return fmt.Errorf("%s.certificate: %w", field, err)
			}
			if c.issuer != nil {
				if err := cert.CheckSignatureFrom(c.issuer); err != nil {
					return fmt.Errorf("%s.certificate: %s was not issued by the CRL's issuer: %v", field, r.Certificate, err)
				}
			}
			e.SerialNumber = cert.SerialNumber
		} else {
			b, _ := hex.DecodeString(r.Serial)
			e.SerialNumber = new(big.Int).SetBytes(b)
		}
		e.RevocationTime, _ = parseTime(r.RevokedAt)
		e.ReasonCode, _ = reasonCode(r.Reason)
		c.revoked = append(c.revoked, e)
	}
	return nil
}

// signingKey finds signing_key and checks that it is the issuer certificate's key,
// before anything is signed.
func (c *run) signingKey() (*hsm.Key, error) {
	id, _ := hex.DecodeString(c.cfg.SigningKey.ID)
	key, err := c.tok.FindKey(hsm.KeyRef{Label: c.cfg.SigningKey.Label, ID: id})
	if err != nil {
		return nil, err
	}
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.issuer.PublicKey) {
		return nil, fmt.Errorf("signing_key %q (id %s) does not match the public key of the issuer certificate %s (%s): refusing to sign",
			c.cfg.SigningKey.Label, c.cfg.SigningKey.ID, c.cfg.Inputs.IssuerCertificate, c.issuer.Subject)
	}
	c.tr.step("found signing key %q (id %s); it matches issuer certificate %q; test signature verified", c.cfg.SigningKey.Label, c.cfg.SigningKey.ID, c.issuer.Subject)
	c.tr.publicKey("signing key", key.Public())
	return key, nil
}

// serial reads a certificate serial from the token's random generator: 16
// bytes, positive, first byte non-zero so that the length is fixed.
func (c *run) serial() (*big.Int, error) {
	b, err := c.tok.Random(16)
	if err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	if b[0] == 0 {
		b[0] = 1
	}
	return new(big.Int).SetBytes(b), nil
}

func (c *run) keyCeremony() error {
	key, err := c.generate()
	if err != nil {
		return err
	}
	if err := c.writePublicKey(key.Public()); err != nil {
		return err
	}
	uri := &hsm.URI{Token: c.cfg.HSM.Token, Serial: c.cfg.HSM.Serial, Object: key.Ref().Label, ID: key.Ref().ID, Type: "private"}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	spkiSum := sha256.Sum256(spki)
	info := fmt.Sprintf("# Written by anvil ceremony: how an issuer configuration names this key.\n"+
		"token: %q\nlabel: %q\nid: %q\nalgorithm: %q\nuri: %q\npublic_key_sha256: %q\n",
		c.tok.Label(), key.Ref().Label, hex.EncodeToString(key.Ref().ID), c.cfg.Key.Algorithm, uri.String(), hex.EncodeToString(spkiSum[:]))
	return c.write("outputs.key_info", c.cfg.Outputs.KeyInfo, []byte(info))
}

// generate makes the ceremony's key pair.
func (c *run) generate() (*hsm.Key, error) {
	var id []byte
	if c.cfg.Key.ID != "" {
		id, _ = hex.DecodeString(c.cfg.Key.ID)
	}
	key, err := c.tok.GenerateKey(hsm.KeySpec{Label: c.cfg.Key.Label, ID: id, Algorithm: hsm.Algorithm(c.cfg.Key.Algorithm)})
	if err != nil {
		return nil, err
	}
	c.tokenChanged = true
	c.tr.step("generated key pair %q (id %x, %s) on the token: private, sensitive, never extractable, sign only; test signature verified",
		key.Ref().Label, key.Ref().ID, c.cfg.Key.Algorithm)
	c.tr.publicKey("new key", key.Public())
	return key, nil
}

func (c *run) rootCeremony() error {
	pr := c.cfg.Profile
	maxPath := -1
	if pr.MaxPathLen != nil {
		maxPath = *pr.MaxPathLen
	}
	// Dry run with a throwaway key, so that a certificate that would fail lint is
	// found before a key is generated on the token.
	if !c.cfg.Key.UseExisting {
		if err := c.dryRunRoot(maxPath); err != nil {
			return fmt.Errorf("dry run with a throwaway key, before touching the token: %w", err)
		}
		c.tr.step("dry run: the root certificate built with a throwaway key of the same type passes lint")
	}
	var key *hsm.Key
	var err error
	if c.cfg.Key.UseExisting {
		id, _ := hex.DecodeString(c.cfg.Key.ID)
		if key, err = c.tok.FindKey(hsm.KeyRef{Label: c.cfg.Key.Label, ID: id}); err != nil {
			return err
		}
		c.tr.step("found existing key pair %q (id %x); test signature verified", key.Ref().Label, key.Ref().ID)
		c.tr.publicKey("root key", key.Public())
	} else if key, err = c.generate(); err != nil {
		return err
	}
	serial, err := c.serial()
	if err != nil {
		return err
	}
	tmpl, err := pr.caTemplate(serial, pr.Subject.name(), maxPath)
	if err != nil {
		return err
	}
	der, err := c.signCert("root certificate", tmpl, nil, key.Public(), key)
	if err != nil {
		return err
	}
	if c.cfg.Outputs.PublicKey != "" {
		if err := c.writePublicKey(key.Public()); err != nil {
			return err
		}
	}
	return c.writeCert(der)
}

func (c *run) dryRunRoot(maxPath int) error {
	var k crypto.Signer
	var err error
	switch hsm.Algorithm(c.cfg.Key.Algorithm) {
	case hsm.ECDSAP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case hsm.ECDSAP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case hsm.RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case hsm.RSA3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case hsm.RSA4096:
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	}
	if err != nil {
		return err
	}
	tmpl, err := c.cfg.Profile.caTemplate(big.NewInt(1<<62), c.cfg.Profile.Subject.name(), maxPath)
	if err != nil {
		return err
	}
	_, err = issuance.SignCertificate(c.ctx, tmpl, nil, k.Public(), k, c.cfg.IgnoredLints)
	return err
}

func (c *run) intermediateCeremony() error {
	return c.signUnderIssuer("intermediate certificate", c.subject, func(serial *big.Int) (*x509.Certificate, error) {
		tmpl, err := c.cfg.Profile.caTemplate(serial, c.cfg.Profile.Subject.name(), 0)
		if err == nil {
			c.tr.publicKey("subject key", c.subject)
		}
		return tmpl, err
	})
}

// signUnderIssuer is a certificate signed by the issuer's HSM key: find the
// key, draw a serial, build the template for it, sign (lint, HSM, verify) and
// write the certificate out.
func (c *run) signUnderIssuer(what string, subjectKey crypto.PublicKey, template func(serial *big.Int) (*x509.Certificate, error)) error {
	key, serial, err := c.signingKeyAndSerial()
	if err != nil {
		return err
	}
	tmpl, err := template(serial)
	if err != nil {
		return err
	}
	der, err := c.signCert(what, tmpl, c.issuer, subjectKey, key)
	if err != nil {
		return err
	}
	return c.writeCert(der)
}

func (c *run) crossCeremony() error {
	return c.signUnderIssuer("cross-certificate", c.toCross.PublicKey, c.crossTemplate)
}

// crossTemplate copies the certificate to cross-sign: same subject and key
// identifier, its key usages and path length unless the profile sets them.
func (c *run) crossTemplate(serial *big.Int) (*x509.Certificate, error) {
	pr := c.cfg.Profile
	if len(pr.KeyUsages) == 0 {
		pr.KeyUsages = keyUsageList(c.toCross.KeyUsage)
	}
	maxPath := c.toCross.MaxPathLen
	if c.toCross.MaxPathLen == 0 && !c.toCross.MaxPathLenZero {
		maxPath = -1
	}
	tmpl, err := pr.caTemplate(serial, c.toCross.Subject, maxPath)
	if err != nil {
		return nil, err
	}
	// Same subject, byte for byte, and same key identifier: a path builder must
	// see the cross-certificate and the original as the same CA.
	tmpl.RawSubject = c.toCross.RawSubject
	tmpl.SubjectKeyId = c.toCross.SubjectKeyId
	if len(pr.ExtKeyUsages) == 0 {
		tmpl.ExtKeyUsage = c.toCross.ExtKeyUsage
	}
	c.tr.step("cross-signing %q (key SHA-256 %s) under %q", c.toCross.Subject, spkiHash(c.toCross.PublicKey), c.issuer.Subject)
	return tmpl, nil
}

func (c *run) crlCeremony() error {
	key, err := c.signingKey()
	if err != nil {
		return err
	}
	tu, _ := parseTime(c.cfg.CRL.ThisUpdate)
	nu, _ := parseTime(c.cfg.CRL.NextUpdate)
	scope := issuance.CRLCoversCAs
	if c.cfg.CRL.Covers == "subscribers" {
		scope = issuance.CRLCoversSubscribers
	}
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(c.cfg.CRL.Number),
		ThisUpdate:                tu,
		NextUpdate:                nu,
		RevokedCertificateEntries: c.revoked,
		ExtraExtensions:           []pkix.Extension{issuance.IssuingDistributionPoint(c.cfg.CRL.DistributionPoint, scope)},
	}
	signed, err := issuance.SignRevocationList(c.ctx, tmpl, c.issuer, key, scope, c.cfg.IgnoredLints)
	if err != nil {
		return err
	}
	c.tr.signed("CRL")
	c.tr.line("CRL:")
	c.tr.line("  issuer:       %s", signed.CRL.Issuer)
	c.tr.line("  number:       %s", signed.CRL.Number)
	c.tr.line("  this update:  %s", signed.CRL.ThisUpdate.Format(time.RFC3339))
	c.tr.line("  next update:  %s", signed.CRL.NextUpdate.Format(time.RFC3339))
	for _, e := range signed.CRL.RevokedCertificateEntries {
		c.tr.line("  revoked:      serial %x at %s, reason %d", e.SerialNumber, e.RevocationTime.Format(time.RFC3339), e.ReasonCode)
	}
	sum := sha256.Sum256(signed.DER)
	c.tr.line("  SHA-256:      %s", colonHex(sum[:]))
	return c.write("outputs.crl", c.cfg.Outputs.CRL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: signed.DER}))
}

func (c *run) ocspSignerCeremony() error {
	return c.signUnderIssuer("OCSP responder certificate", c.subject, func(serial *big.Int) (*x509.Certificate, error) {
		tmpl, err := c.cfg.Profile.ocspSignerTemplate(serial)
		if err == nil {
			c.tr.publicKey("responder key", c.subject)
		}
		return tmpl, err
	})
}

// signingKeyAndSerial finds the signing key and draws a serial from the
// token, the first two steps of every certificate signed under an issuer.
func (c *run) signingKeyAndSerial() (*hsm.Key, *big.Int, error) {
	key, err := c.signingKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := c.serial()
	if err != nil {
		return nil, nil, err
	}
	return key, serial, nil
}

// signCert lints and signs tmpl for pub with key under issuer (nil for a
// self-signed root), records it in the transcript, and returns its DER.
func (c *run) signCert(what string, tmpl, issuer *x509.Certificate, pub crypto.PublicKey, key *hsm.Key) ([]byte, error) {
	signed, err := issuance.SignCertificate(c.ctx, tmpl, issuer, pub, key, c.cfg.IgnoredLints)
	if err != nil {
		return nil, err
	}
	c.tr.signed(what)
	c.tr.certificate(signed.Cert)
	return signed.DER, nil
}

func (c *run) writeCert(der []byte) error {
	return c.write("outputs.certificate", c.cfg.Outputs.Certificate, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (c *run) writePublicKey(pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return c.write("outputs.public_key", c.cfg.Outputs.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (c *run) write(field, path string, data []byte) error {
	if err := writeExclusive(path, data); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	sum := sha256.Sum256(data)
	c.tr.step("wrote %s: %s (%d bytes, SHA-256 %s)", field, path, len(data), hex.EncodeToString(sum[:]))
	return nil
}

// writeExclusive creates path, failing if it exists, and syncs it.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY", path)
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func keyUsageList(ku x509.KeyUsage) []string {
	var out []string
	for name, bit := range keyUsageNames {
		if ku&bit != 0 {
			out = append(out, name)
		}
	}
	return out
}

func spkiHash(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "(unencodable)"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func colonHex(b []byte) string {
	var buf bytes.Buffer
	for i, c := range b {
		if i > 0 {
			buf.WriteByte(':')
		}
		fmt.Fprintf(&buf, "%02X", c)
	}
	return buf.String()
}
