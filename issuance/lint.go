package issuance

import (
	"fmt"
	"slices"
	"strings"

	zx509 "github.com/zmap/zcrypto/x509"
	_ "github.com/zmap/zlint/v3" // registers every lint
	"github.com/zmap/zlint/v3/lint"
)

// neverApplicable lists lints that cannot fire on a certificate Anvil lints, and
// why; they are left out of every registry. Each one must say why here.
var neverApplicable = map[string]string{
	// It checks whether one of eight compromised eMudhra intermediate keys signed
	// the certificate, by verifying the signature with each of them. The linted
	// certificate is signed by a throwaway key made at start-up, so the lint can
	// never fire; it costs about 4.2 ms of the 4.7 ms a full lint run takes.
	"e_cert_issued_by_compromised_emudhra_ca": "the linted certificate is signed by a throwaway key",
}

// linter runs zlint with a fixed registry: every registered lint except the
// never-applicable ones and the profile's ignored ones.
//
// It runs the lints itself rather than through zlint.LintCertificateEx, which
// on every call lists and sorts the registry's names and fills a map of ~400
// results: a tenth of the cost of issuing a certificate, for results that are
// thrown away unless one failed.
type linter struct {
	registry  lint.Registry
	certLints []*lint.CertificateLint
	crlLints  []*lint.RevocationListLint
	config    lint.Configuration
	ignored   []string
}

func newLinter(ignored []string) (*linter, error) { return newLinterConfig(ignored, "") }

// caCRLLintConfig tells zlint that a CRL covers CA certificates, whose
// nextUpdate may be 12 months out rather than 10 days.
const caCRLLintConfig = "[e_crl_next_update_invalid]\nSubscriberCRL = false\n"

// newLinterConfig is newLinter with a zlint TOML configuration.
func newLinterConfig(ignored []string, toml string) (*linter, error) {
	exclude := slices.Clone(ignored)
	for name := range neverApplicable {
		if !slices.Contains(exclude, name) {
			exclude = append(exclude, name)
		}
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeNames: exclude})
	if err != nil {
		return nil, fmt.Errorf("zlint: %w", err)
	}
	if toml != "" {
		cfg, err := lint.NewConfigFromString(toml)
		if err != nil {
			return nil, fmt.Errorf("zlint configuration: %w", err)
		}
		reg.SetConfiguration(cfg)
	}
	return &linter{
		registry:  reg,
		certLints: reg.CertificateLints().Lints(),
		crlLints:  reg.RevocationListLints().Lints(),
		config:    reg.GetConfiguration(),
		ignored:   ignored,
	}, nil
}

// check lints a DER certificate and returns ErrLint naming every error- or
// fatal-level result.
func (l *linter) check(der []byte) error { return l.checkAs(der, false) }

// checkAs lints der; selfSigned says the certificate will be self-signed. zlint
// decides whether a certificate is a root by verifying its signature with its
// own key, which a lint certificate signed by a throwaway key never passes, so a
// root-to-be would be linted as a subordinate CA without this.
func (l *linter) checkAs(der []byte, selfSigned bool) error {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: zlint cannot parse the certificate: %v", ErrLint, err)
	}
	if selfSigned {
		c.SelfSigned = true
	}
	var failed []string
	for _, lt := range l.certLints {
		// Execute recovers a panicking lint as a Fatal result.
		failed = appendFailure(failed, lt.Name, lt.Execute(c, l.config))
	}
	return lintError(failed)
}

// checkCRL lints a DER CRL.
func (l *linter) checkCRL(der []byte) error {
	crl, err := zx509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("%w: zlint cannot parse the CRL: %v", ErrLint, err)
	}
	var failed []string
	for _, lt := range l.crlLints {
		failed = appendFailure(failed, lt.Name, lt.Execute(crl, l.config))
	}
	return lintError(failed)
}

func appendFailure(failed []string, name string, r *lint.LintResult) []string {
	if r == nil || (r.Status != lint.Error && r.Status != lint.Fatal) {
		return failed
	}
	if r.Details != "" {
		name += " (" + r.Details + ")"
	}
	return append(failed, name)
}

func lintError(failed []string) error {
	if len(failed) == 0 {
		return nil
	}
	slices.Sort(failed)
	return fmt.Errorf("%w: %s", ErrLint, strings.Join(failed, "; "))
}
