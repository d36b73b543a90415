package ceremony

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// transcript is the human-readable record of a ceremony: every step, the
// configuration's hash, each output's hash, each certificate's fingerprint. It is
// echoed as it is written and saved to the file the configuration names, for
// witnesses to sign. It never holds a PIN.
type transcript struct {
	out   io.Writer
	buf   bytes.Buffer
	steps int
}

func newTranscript(out io.Writer) *transcript { return &transcript{out: out} }

func (t *transcript) line(format string, args ...any) {
	s := fmt.Sprintf(format, args...) + "\n"
	t.buf.WriteString(s)
	io.WriteString(t.out, s)
}

func (t *transcript) step(format string, args ...any) {
	t.steps++
	t.line("[%s] step %d: %s", time.Now().UTC().Format("15:04:05"), t.steps, fmt.Sprintf(format, args...))
}

func (t *transcript) bytes() []byte { return t.buf.Bytes() }

func (t *transcript) header(kind, path, sum string, now time.Time, version string) {
	host, _ := os.Hostname()
	t.line("ANVIL KEY CEREMONY TRANSCRIPT")
	t.line("%s", strings.Repeat("=", 60))
	t.line("ceremony:       %s", kind)
	t.line("configuration:  %s", path)
	t.line("config SHA-256: %s", sum)
	t.line("anvil version:  %s", version)
	t.line("host:           %s", host)
	t.line("started:        %s", now.UTC().Format(time.RFC3339))
	t.line("")
}

func (t *transcript) footer(now time.Time) {
	t.line("finished:       %s", now.UTC().Format(time.RFC3339))
	t.line("")
	t.line("Witnesses (name, signature, date):")
	for i := 0; i < 3; i++ {
		t.line("")
		t.line("  ______________________________________________")
	}
}

func (t *transcript) signed(what string) {
	t.step("linted the %s with a throwaway key: no error-level lint; signed exactly that TBS with the HSM key; "+
		"signature verified against the issuer key; signed TBS identical to the linted TBS; linted again: no error-level lint", what)
}

func (t *transcript) publicKey(what string, pub crypto.PublicKey) {
	t.line("    %s: %s, SPKI SHA-256 %s", what, describeKey(pub), spkiHash(pub))
}

func (t *transcript) certificate(c *x509.Certificate) {
	fp := sha256.Sum256(c.Raw)
	t.line("certificate:")
	t.line("  subject:             %s", c.Subject)
	t.line("  issuer:              %s", c.Issuer)
	t.line("  serial:              %x", c.SerialNumber)
	t.line("  not before:          %s", c.NotBefore.UTC().Format(time.RFC3339))
	t.line("  not after:           %s", c.NotAfter.UTC().Format(time.RFC3339))
	t.line("  key:                 %s", describeKey(c.PublicKey))
	t.line("  SPKI SHA-256:        %s", spkiHash(c.PublicKey))
	t.line("  SHA-256 fingerprint: %s", colonHex(fp[:]))
	ca := "no"
	if c.IsCA {
		ca = "yes"
		if c.MaxPathLen >= 0 && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
			ca += fmt.Sprintf(", path length %d", c.MaxPathLen)
		}
	}
	t.line("  CA:                  %s", ca)
}

func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}
