package ceremony_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/anvil-pki/anvil/ceremony"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// lab is a ceremony room: an offline root token and an online token in one
// SoftHSM2 directory, and an output folder.
type lab struct {
	t      *testing.T
	root   *softhsmtest.Token
	online *softhsmtest.Token
	out    string
	n      int
}

func newLab(t *testing.T) *lab {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is missing: apt-get install -y openssl (or run `make deps`)")
	}
	d := softhsmtest.NewDirT(t)
	root, err := d.InitToken("anvil-root")
	if err != nil {
		t.Fatal(err)
	}
	online, err := d.InitToken("anvil-online")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	return &lab{t: t, root: root, online: online, out: out}
}

func (l *lab) path(name string) string { return filepath.Join(l.out, name) }

func (l *lab) hsmFor(tok *softhsmtest.Token) ceremony.HSMConfig {
	return ceremony.HSMConfig{Module: tok.Dir.ModulePath, Token: tok.Label, PIN: ceremony.PINConfig{File: tok.PINFile}}
}

// run writes cfg as YAML beside the outputs and runs it; it returns the echoed
// transcript.
func (l *lab) run(cfg ceremony.Config) (string, error) {
	l.t.Helper()
	l.n++
	if cfg.Transcript == "" {
		cfg.Transcript = l.path(cfg.Type + "-" + itoa(l.n) + "-transcript.txt")
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	cfgPath := filepath.Join(filepath.Dir(l.out), "ceremony-"+itoa(l.n)+".yaml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		l.t.Fatal(err)
	}
	var echo bytes.Buffer
	err = ceremony.Run(context.Background(), cfgPath, ceremony.Options{Out: &echo, Version: "test"})
	return echo.String(), err
}

func (l *lab) mustRun(cfg ceremony.Config) string {
	l.t.Helper()
	tr, err := l.run(cfg)
	if err != nil {
		l.t.Fatalf("%s ceremony: %v\n%s", cfg.Type, err, tr)
	}
	return tr
}

func itoa(n int) string { return strings.TrimLeft(hex.EncodeToString([]byte{byte(n)}), "0") + "x" }

var (
	jan2026 = "2026-01-01T00:00:00Z"
	in20y   = "2046-01-01T00:00:00Z"
	in5y    = "2031-01-01T00:00:00Z"
)

func (l *lab) rootConfig(label, id, cn, out string) ceremony.Config {
	return ceremony.Config{
		Type: ceremony.TypeRoot,
		HSM:  l.hsmFor(l.root),
		Key:  ceremony.KeyConfig{Label: label, ID: id, Algorithm: "ecdsa-p384"},
		Profile: ceremony.Profile{
			Subject:   ceremony.Subject{CommonName: cn, Organization: "Anvil Test", Country: "US"},
			NotBefore: jan2026, NotAfter: in20y,
			KeyUsages: []string{"certSign", "crlSign", "digitalSignature"},
		},
		Outputs: ceremony.Outputs{Certificate: l.path(out), PublicKey: l.path(out + ".pub")},
	}
}

func (l *lab) keyConfig(label, id, alg string) ceremony.Config {
	return ceremony.Config{
		Type:    ceremony.TypeKey,
		HSM:     l.hsmFor(l.online),
		Key:     ceremony.KeyConfig{Label: label, ID: id, Algorithm: alg},
		Outputs: ceremony.Outputs{PublicKey: l.path(label + ".pub.pem"), KeyInfo: l.path(label + ".key.yaml")},
	}
}

func (l *lab) intermediateConfig(rootLabel, rootID, rootCert, pub, cn, out string) ceremony.Config {
	return ceremony.Config{
		Type:       ceremony.TypeIntermediate,
		HSM:        l.hsmFor(l.root),
		SigningKey: ceremony.KeyRefConfig{Label: rootLabel, ID: rootID},
		Inputs:     ceremony.Inputs{IssuerCertificate: l.path(rootCert), PublicKey: l.path(pub)},
		Profile: ceremony.Profile{
			Subject:   ceremony.Subject{CommonName: cn, Organization: "Anvil Test", Country: "US"},
			NotBefore: jan2026, NotAfter: in5y,
			KeyUsages:    []string{"certSign", "crlSign", "digitalSignature"},
			ExtKeyUsages: []string{"serverAuth", "clientAuth"},
			Policies:     []string{"2.23.140.1.2.1"},
			CRLURL:       "http://pki.anvil.test/root.crl",
			IssuerURL:    "http://pki.anvil.test/root.der",
		},
		Outputs: ceremony.Outputs{Certificate: l.path(out)},
	}
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issueLeaf issues a leaf through the ordinary issuance path from an
// intermediate whose key is on the online token, and writes it as PEM.
func (l *lab) issueLeaf(intCert, keyLabel, keyID, out string) {
	t := l.t
	tok, err := hsm.Open(hsm.Config{ModulePath: l.online.Dir.ModulePath, TokenLabel: l.online.Label, PIN: hsm.PINSource{File: l.online.PINFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	id, _ := hex.DecodeString(keyID)
	key, err := tok.FindKey(hsm.KeyRef{Label: keyLabel, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuance.NewIssuer(context.Background(), keyLabel, readCert(t, l.path(intCert)), key, issuance.URLs{
		IssuerURL: "http://pki.anvil.test/int.der", CRLURL: "http://pki.anvil.test/int.crl"})
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := issuance.NewProfile("tls", issuance.ProfileConfig{})
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{iss}, Profiles: []*issuance.Profile{profile}, Ledger: issuancetest.NewMemoryLedger()})
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"www.example.com"}}, leafKey)
	got, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{"www.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(l.path(out), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: got.DER}), 0o644)
}

func concat(t *testing.T, out string, files ...string) string {
	var b []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every ceremony type on SoftHSM2, checked with Go and with openssl.
func TestEveryCeremonyType(t *testing.T) {
	l := newLab(t)

	// Root A, and the online keys.
	tr := l.mustRun(l.rootConfig("root-a", "01", "Anvil Test Root A", "root-a.pem"))
	rootA := readCert(t, l.path("root-a.pem"))
	if rootA.Subject.CommonName != "Anvil Test Root A" || !rootA.IsCA || rootA.CheckSignatureFrom(rootA) != nil {
		t.Fatalf("root A: %v CA=%v", rootA.Subject, rootA.IsCA)
	}
	for _, want := range []string{"config SHA-256:", "generated key pair \"root-a\" (id 01", "SHA-256 fingerprint:", "SPKI SHA-256", "wrote outputs.certificate", "Witnesses"} {
		if !strings.Contains(tr, want) {
			t.Errorf("root transcript lacks %q", want)
		}
	}
	if saved, err := os.ReadFile(l.path("root-1x-transcript.txt")); err != nil || string(saved) != tr {
		t.Errorf("transcript file differs from what was echoed (%v)", err)
	}
	l.mustRun(l.keyConfig("int-ecdsa", "11", "ecdsa-p256"))
	l.mustRun(l.keyConfig("int-rsa", "12", "rsa-2048"))
	info, _ := os.ReadFile(l.path("int-ecdsa.key.yaml"))
	if !strings.Contains(string(info), `uri: "pkcs11:token=anvil-online;object=int-ecdsa;id=%11;type=private"`) {
		t.Errorf("key info:\n%s", info)
	}

	// Intermediates for both online keys, verified by openssl, and a leaf under each.
	l.mustRun(l.intermediateConfig("root-a", "01", "root-a.pem", "int-ecdsa.pub.pem", "Anvil Test ECDSA Intermediate", "int-ecdsa.pem"))
	l.mustRun(l.intermediateConfig("root-a", "01", "root-a.pem", "int-rsa.pub.pem", "Anvil Test RSA Intermediate", "int-rsa.pem"))
	for _, name := range []string{"int-ecdsa", "int-rsa"} {
		c := readCert(t, l.path(name+".pem"))
		if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
			t.Errorf("%s: IsCA=%v pathlen=%d zero=%v, want a CA with path length 0", name, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
		}
		if out := openssl(t, "verify", "-CAfile", l.path("root-a.pem"), l.path(name+".pem")); !strings.Contains(out, ": OK") {
			t.Errorf("openssl verify %s: %s", name, out)
		}
		keyID := map[string]string{"int-ecdsa": "11", "int-rsa": "12"}[name]
		l.issueLeaf(name+".pem", name, keyID, name+"-leaf.pem")
		if out := openssl(t, "verify", "-CAfile", l.path("root-a.pem"), "-untrusted", l.path(name+".pem"), l.path(name+"-leaf.pem")); !strings.Contains(out, ": OK") {
			t.Errorf("openssl verify leaf under %s: %s", name, out)
		}
	}

	// Root B, cross-signed by root A; a leaf under an intermediate of B verifies
	// both through B (trusting B) and through the cross-certificate (trusting A).
	l.mustRun(l.rootConfig("root-b", "02", "Anvil Test Root B", "root-b.pem"))
	l.mustRun(ceremony.Config{
		Type:       ceremony.TypeCross,
		HSM:        l.hsmFor(l.root),
		SigningKey: ceremony.KeyRefConfig{Label: "root-a", ID: "01"},
		Inputs:     ceremony.Inputs{IssuerCertificate: l.path("root-a.pem"), Certificate: l.path("root-b.pem")},
		Profile: ceremony.Profile{NotBefore: jan2026, NotAfter: in5y, CRLURL: "http://pki.anvil.test/root.crl",
			IssuerURL: "http://pki.anvil.test/root-a.der", Policies: []string{"2.23.140.1.2.1"}},
		Outputs: ceremony.Outputs{Certificate: l.path("root-b-by-a.pem")},
	})
	cross := readCert(t, l.path("root-b-by-a.pem"))
	rootB := readCert(t, l.path("root-b.pem"))
	if !bytes.Equal(cross.RawSubject, rootB.RawSubject) || !cross.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(rootB.PublicKey) ||
		!bytes.Equal(cross.SubjectKeyId, rootB.SubjectKeyId) || cross.CheckSignatureFrom(rootA) != nil {
		t.Fatal("the cross-certificate does not carry root B's subject, key and key id under root A's signature")
	}
	l.mustRun(l.keyConfig("int-b", "13", "ecdsa-p256"))
	l.mustRun(l.intermediateConfig("root-b", "02", "root-b.pem", "int-b.pub.pem", "Anvil Test Intermediate B", "int-b.pem"))
	l.issueLeaf("int-b.pem", "int-b", "13", "leaf-b.pem")
	if out := openssl(t, "verify", "-CAfile", l.path("root-b.pem"), "-untrusted", l.path("int-b.pem"), l.path("leaf-b.pem")); !strings.Contains(out, ": OK") {
		t.Errorf("path through root B: %s", out)
	}
	untrusted := concat(t, l.path("untrusted-b.pem"), l.path("int-b.pem"), l.path("root-b-by-a.pem"))
	if out := openssl(t, "verify", "-show_chain", "-CAfile", l.path("root-a.pem"), "-untrusted", untrusted, l.path("leaf-b.pem")); !strings.Contains(out, ": OK") || !strings.Contains(out, "Anvil Test Root A") {
		t.Errorf("path through the cross-certificate to root A: %s", out)
	}

	// A root CRL revoking the RSA intermediate (by file) and a serial.
	l.mustRun(ceremony.Config{
		Type:       ceremony.TypeCRL,
		HSM:        l.hsmFor(l.root),
		SigningKey: ceremony.KeyRefConfig{Label: "root-a", ID: "01"},
		Inputs:     ceremony.Inputs{IssuerCertificate: l.path("root-a.pem")},
		CRL: ceremony.CRLConfig{Number: 7, DistributionPoint: "http://pki.anvil.test/root.crl", ThisUpdate: time.Now().UTC().Add(-time.Hour).Format(time.RFC3339),
			NextUpdate: time.Now().UTC().Add(30 * 24 * time.Hour).Format(time.RFC3339),
			Revoked: []ceremony.RevokedEntry{
				{Certificate: l.path("int-rsa.pem"), RevokedAt: jan2026, Reason: "cessationOfOperation"},
				{Serial: "0badc0de", RevokedAt: jan2026, Reason: "keyCompromise"},
			}},
		Outputs: ceremony.Outputs{CRL: l.path("root-a.crl")},
	})
	out := openssl(t, "crl", "-in", l.path("root-a.crl"), "-CAfile", l.path("root-a.pem"), "-verify", "-noout", "-text")
	t.Logf("openssl crl -verify -text:\n%s", out)
	intRSA := readCert(t, l.path("int-rsa.pem"))
	for _, want := range []string{"verify OK", strings.ToUpper(intRSA.SerialNumber.Text(16)), "0BADC0DE", "Cessation Of Operation", "Key Compromise", "Only CA Certificates", "URI:http://pki.anvil.test/root.crl"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl output lacks %q:\n%s", want, out)
		}
	}

	// A delegated OCSP responder under the ECDSA intermediate, with its key on
	// the online token. Its issuer key is the intermediate's, on the online token.
	l.mustRun(l.keyConfig("ocsp-ecdsa", "21", "ecdsa-p256"))
	l.mustRun(ceremony.Config{
		Type:       ceremony.TypeOCSPSigner,
		HSM:        l.hsmFor(l.online),
		SigningKey: ceremony.KeyRefConfig{Label: "int-ecdsa", ID: "11"},
		Inputs:     ceremony.Inputs{IssuerCertificate: l.path("int-ecdsa.pem"), PublicKey: l.path("ocsp-ecdsa.pub.pem")},
		Profile: ceremony.Profile{Subject: ceremony.Subject{CommonName: "Anvil Test OCSP Responder"},
			NotBefore: time.Now().UTC().Add(-time.Hour).Format(time.RFC3339), NotAfter: time.Now().UTC().Add(60 * 24 * time.Hour).Format(time.RFC3339)},
		Outputs: ceremony.Outputs{Certificate: l.path("ocsp.pem")},
	})
	ocspCert := readCert(t, l.path("ocsp.pem"))
	if ocspCert.IsCA || len(ocspCert.ExtKeyUsage) != 1 || ocspCert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || ocspCert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("OCSP signer: CA=%v EKU=%v KU=%v", ocspCert.IsCA, ocspCert.ExtKeyUsage, ocspCert.KeyUsage)
	}
	noCheck := false
	for _, e := range ocspCert.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}) {
			noCheck = true
		}
	}
	if !noCheck {
		t.Error("OCSP signer lacks id-pkix-ocsp-nocheck")
	}
	text := openssl(t, "x509", "-in", l.path("ocsp.pem"), "-noout", "-text")
	for _, want := range []string{"OCSP Signing", "OCSP No Check"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	if out := openssl(t, "verify", "-CAfile", l.path("root-a.pem"), "-untrusted", l.path("int-ecdsa.pem"), "-purpose", "ocsphelper", l.path("ocsp.pem")); !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify OCSP signer: %s", out)
	}
}

// snapshot lists the token's objects and the output folder, to show a refused
// ceremony changed neither.
func (l *lab) snapshot() string {
	l.t.Helper()
	var lines []string
	for _, tok := range []*softhsmtest.Token{l.root, l.online} {
		h, err := hsm.Open(hsm.Config{ModulePath: tok.Dir.ModulePath, TokenLabel: tok.Label, PIN: hsm.PINSource{File: tok.PINFile}})
		if err != nil {
			l.t.Fatal(err)
		}
		objs, err := h.Objects()
		h.Close()
		if err != nil {
			l.t.Fatal(err)
		}
		for _, o := range objs {
			lines = append(lines, tok.Label+" "+o.Class+" "+o.Label+" "+hex.EncodeToString(o.ID))
		}
	}
	entries, _ := os.ReadDir(l.out)
	for _, e := range entries {
		fi, _ := e.Info()
		lines = append(lines, "file "+e.Name()+" "+itoa(int(fi.Size())))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestRefusalsChangeNothing(t *testing.T) {
	l := newLab(t)
	l.mustRun(l.rootConfig("root-a", "01", "Anvil Test Root A", "root-a.pem"))
	l.mustRun(l.keyConfig("int-ecdsa", "11", "ecdsa-p256"))
	l.mustRun(l.rootConfig("root-b", "02", "Anvil Test Root B", "root-b.pem"))

	writeRaw := func(yamlText string) string {
		p := filepath.Join(t.TempDir(), "raw.yaml")
		os.WriteFile(p, []byte(yamlText), 0o600)
		return p
	}
	existingOut := l.rootConfig("root-c", "03", "Anvil Test Root C", "root-a.pem") // output exists
	existingLabel := l.rootConfig("root-a", "04", "Anvil Test Root A again", "root-new.pem")
	tooLong := l.rootConfig("root-d", "05", "Anvil Test Root D", "root-d.pem")
	tooLong.Profile.NotAfter = "2056-01-02T00:00:00Z" // 30 years
	mismatch := l.intermediateConfig("root-b", "02", "root-a.pem", "int-ecdsa.pub.pem", "Mismatched", "int-mismatch.pem")

	cases := []struct {
		name string
		run  func() (string, error)
		says []string
	}{
		{"existing output file", func() (string, error) { return l.run(existingOut) }, []string{"outputs.certificate", "root-a.pem already exists"}},
		{"existing label", func() (string, error) { return l.run(existingLabel) }, []string{"already", `label "root-a"`}},
		{"unknown YAML key", func() (string, error) {
			b, _ := yaml.Marshal(l.rootConfig("root-e", "06", "E", "root-e.pem"))
			raw := writeRaw(strings.Replace(string(b), "profile:\n", "profile:\n    colour: red\n", 1))
			return "", ceremony.Run(context.Background(), raw, ceremony.Options{})
		}, []string{`unknown key "colour"`, "line"}},
		{"root validity beyond the limit", func() (string, error) { return l.run(tooLong) }, []string{"profile.not_after", "exceeds the limit", "root_max_validity"}},
		{"signing key does not match the issuer", func() (string, error) { return l.run(mismatch) }, []string{`signing_key "root-b"`, "does not match", "root-a.pem"}},
		{"missing required field", func() (string, error) {
			c := l.rootConfig("root-f", "07", "F", "root-f.pem")
			c.Profile.Subject.CommonName = ""
			return l.run(c)
		}, []string{"profile.subject.common_name: is required"}},
		{"field of another type", func() (string, error) {
			c := l.rootConfig("root-g", "08", "G", "root-g.pem")
			c.CRL.Number = 3
			return l.run(c)
		}, []string{"crl: does not belong in a root ceremony"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := l.snapshot()
			_, err := c.run()
			if err == nil {
				t.Fatal("ceremony succeeded")
			}
			for _, want := range c.says {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if after := l.snapshot(); after != before {
				t.Errorf("the refusal changed the token or the output folder:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
