package ceremony

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
)

// The ceremony types.
const (
	TypeKey          = "key"
	TypeRoot         = "root"
	TypeIntermediate = "intermediate"
	TypeCross        = "cross-certificate"
	TypeCRL          = "crl"
	TypeOCSPSigner   = "ocsp-signer"
)

// Config is one ceremony, as one YAML file. Which sections a type needs, and
// which it must not have, is checked by Validate.
type Config struct {
	Type         string       `yaml:"type"`
	Transcript   string       `yaml:"transcript"` // file the transcript is written to
	HSM          HSMConfig    `yaml:"hsm"`
	Key          KeyConfig    `yaml:"key"`         // key, root: the key pair to generate (or reuse)
	SigningKey   KeyRefConfig `yaml:"signing_key"` // the CA key that signs (all but key and root)
	Inputs       Inputs       `yaml:"inputs"`
	Outputs      Outputs      `yaml:"outputs"`
	Profile      Profile      `yaml:"profile"`
	CRL          CRLConfig    `yaml:"crl"`
	Limits       Limits       `yaml:"limits"`
	IgnoredLints []string     `yaml:"ignored_lints"`
}

// HSMConfig selects the token and its PIN.
type HSMConfig struct {
	Module string    `yaml:"module"`
	Token  string    `yaml:"token"`  // token label ...
	Serial string    `yaml:"serial"` // ... or serial
	PIN    PINConfig `yaml:"pin"`
}

// PINConfig says where the PIN comes from: a file, an environment variable, or
// a prompt on the terminal with no echo. Never the PIN itself.
type PINConfig struct {
	File   string `yaml:"file"`
	Env    string `yaml:"env"`
	Prompt bool   `yaml:"prompt"`
}

// KeyConfig is a key pair to generate on the token.
type KeyConfig struct {
	Label       string `yaml:"label"`
	ID          string `yaml:"id"` // hex; by default the token's RNG picks 8 bytes
	Algorithm   string `yaml:"algorithm"`
	UseExisting bool   `yaml:"use_existing"` // root only: sign with a key already on the token
}

// KeyRefConfig names an existing key pair by label and hex CKA_ID.
type KeyRefConfig struct {
	Label string `yaml:"label"`
	ID    string `yaml:"id"`
}

// Inputs are files the ceremony reads.
type Inputs struct {
	IssuerCertificate string `yaml:"issuer_certificate"` // the signing CA's certificate (PEM)
	PublicKey         string `yaml:"public_key"`         // the subject key (PEM), for intermediate and ocsp-signer
	Certificate       string `yaml:"certificate"`        // the CA certificate to cross-sign
}

// Outputs are files the ceremony writes. None may exist beforehand.
type Outputs struct {
	PublicKey   string `yaml:"public_key"`  // key, root
	KeyInfo     string `yaml:"key_info"`    // key: token, label, id and URI for issuer configs
	Certificate string `yaml:"certificate"` // root, intermediate, cross-certificate, ocsp-signer
	CRL         string `yaml:"crl"`         // crl
}

// Profile describes the certificate a ceremony signs.
type Profile struct {
	Subject      Subject  `yaml:"subject"`
	NotBefore    string   `yaml:"not_before"` // RFC 3339
	NotAfter     string   `yaml:"not_after"`  // RFC 3339
	KeyUsages    []string `yaml:"key_usages"`
	ExtKeyUsages []string `yaml:"ext_key_usages"`
	Policies     []string `yaml:"policies"` // dotted OIDs
	CRLURL       string   `yaml:"crl_url"`
	IssuerURL    string   `yaml:"issuer_url"`
	OCSPURL      string   `yaml:"ocsp_url"`
	MaxPathLen   *int     `yaml:"max_path_len"` // root only; intermediates are always 0
}

// Subject is an X.509 distinguished name.
type Subject struct {
	CommonName         string `yaml:"common_name"`
	Organization       string `yaml:"organization"`
	OrganizationalUnit string `yaml:"organizational_unit"`
	Country            string `yaml:"country"`
	Province           string `yaml:"province"`
	Locality           string `yaml:"locality"`
}

// CRLConfig describes a CRL.
type CRLConfig struct {
	Number int64 `yaml:"number"`
	// Covers is "ca" (the default: a root's CRL of intermediates) or
	// "subscribers"; it sets the issuing distribution point flag and the
	// nextUpdate bound the lints apply.
	Covers string `yaml:"covers"`
	// DistributionPoint is the URL the CRL is published at, put in its issuing
	// distribution point; it should match the certificates' CRL DP.
	DistributionPoint string         `yaml:"distribution_point"`
	ThisUpdate        string         `yaml:"this_update"` // RFC 3339
	NextUpdate        string         `yaml:"next_update"` // RFC 3339
	Revoked           []RevokedEntry `yaml:"revoked"`
}

// RevokedEntry is one revoked certificate, named by file or by hex serial.
type RevokedEntry struct {
	Certificate string `yaml:"certificate"`
	Serial      string `yaml:"serial"`
	RevokedAt   string `yaml:"revoked_at"` // RFC 3339
	Reason      string `yaml:"reason"`
}

// Limits bound what a ceremony may sign. The defaults are safe for most CAs and
// can be changed per file; they are not any one CA's policy.
type Limits struct {
	RootMaxValidity         config.Duration `yaml:"root_max_validity"`
	IntermediateMaxValidity config.Duration `yaml:"intermediate_max_validity"`
	OCSPSignerMaxValidity   config.Duration `yaml:"ocsp_signer_max_validity"`
	CRLMaxValidity          config.Duration `yaml:"crl_max_validity"`
}

// Default limits.
const (
	DefaultRootMaxValidity         = 25 * 365 * 24 * time.Hour
	DefaultIntermediateMaxValidity = 8 * 365 * 24 * time.Hour
	DefaultOCSPSignerMaxValidity   = 365 * 24 * time.Hour
	DefaultCRLMaxValidity          = 366 * 24 * time.Hour // twelve months, across a leap day
)

// requirements lists, per type, which sections and fields must be set ("+")
// and which must not ("-"). Fields not listed are optional.
var requirements = map[string]map[string]bool{
	TypeKey: {
		"key": true, "outputs.public_key": true, "outputs.key_info": true,
		"signing_key": false, "inputs": false, "profile": false, "crl": false,
		"outputs.certificate": false, "outputs.crl": false,
	},
	TypeRoot: {
		"key": true, "profile": true, "outputs.certificate": true,
		"signing_key": false, "inputs": false, "crl": false, "outputs.key_info": false, "outputs.crl": false,
	},
	TypeIntermediate: {
		"signing_key": true, "inputs.issuer_certificate": true, "inputs.public_key": true, "profile": true, "outputs.certificate": true,
		"key": false, "inputs.certificate": false, "crl": false, "outputs.public_key": false, "outputs.key_info": false, "outputs.crl": false,
	},
	TypeCross: {
		"signing_key": true, "inputs.issuer_certificate": true, "inputs.certificate": true, "profile": true, "outputs.certificate": true,
		"key": false, "inputs.public_key": false, "crl": false, "outputs.public_key": false, "outputs.key_info": false, "outputs.crl": false,
	},
	TypeCRL: {
		"signing_key": true, "inputs.issuer_certificate": true, "crl": true, "outputs.crl": true,
		"key": false, "inputs.public_key": false, "inputs.certificate": false, "profile": false,
		"outputs.public_key": false, "outputs.key_info": false, "outputs.certificate": false,
	},
	TypeOCSPSigner: {
		"signing_key": true, "inputs.issuer_certificate": true, "inputs.public_key": true, "profile": true, "outputs.certificate": true,
		"key": false, "inputs.certificate": false, "crl": false, "outputs.public_key": false, "outputs.key_info": false, "outputs.crl": false,
	},
}

// Validate checks the file as a whole; every problem names its YAML path.
func (c *Config) Validate() error {
	var p config.Problems
	req, ok := requirements[c.Type]
	if !ok {
		p.Addf("type", "%q is not a ceremony type (want key, root, intermediate, cross-certificate, crl or ocsp-signer)", c.Type)
		return p.Err()
	}
	p.Require("transcript", c.Transcript)
	p.Require("hsm.module", c.HSM.Module)
	if (c.HSM.Token == "") == (c.HSM.Serial == "") {
		p.Addf("hsm.token", "give exactly one of hsm.token and hsm.serial")
	}
	pins := 0
	for _, set := range []bool{c.HSM.PIN.File != "", c.HSM.PIN.Env != "", c.HSM.PIN.Prompt} {
		if set {
			pins++
		}
	}
	if pins != 1 {
		p.Addf("hsm.pin", "give exactly one of file, env and prompt")
	}

	present := map[string]bool{
		"key":                       c.Key != KeyConfig{},
		"signing_key":               c.SigningKey != KeyRefConfig{},
		"inputs":                    c.Inputs != Inputs{},
		"inputs.issuer_certificate": c.Inputs.IssuerCertificate != "",
		"inputs.public_key":         c.Inputs.PublicKey != "",
		"inputs.certificate":        c.Inputs.Certificate != "",
		"profile":                   !profileEmpty(c.Profile),
		"crl":                       c.CRL.Number != 0 || c.CRL.ThisUpdate != "" || c.CRL.NextUpdate != "" || len(c.CRL.Revoked) > 0 || c.CRL.Covers != "" || c.CRL.DistributionPoint != "",
		"outputs.public_key":        c.Outputs.PublicKey != "",
		"outputs.key_info":          c.Outputs.KeyInfo != "",
		"outputs.certificate":       c.Outputs.Certificate != "",
		"outputs.crl":               c.Outputs.CRL != "",
	}
	for field, must := range req {
		switch {
		case must && !present[field]:
			p.Addf(field, "is required for a %s ceremony", c.Type)
		case !must && present[field]:
			p.Addf(field, "does not belong in a %s ceremony", c.Type)
		}
	}
	if present["key"] {
		p.Require("key.label", c.Key.Label)
		if !c.Key.UseExisting || c.Key.Algorithm != "" {
			if _, err := hsm.ParseAlgorithm(c.Key.Algorithm); err != nil {
				p.Addf("key.algorithm", "%v", err)
			}
		}
		if c.Key.ID != "" {
			if _, err := hex.DecodeString(c.Key.ID); err != nil {
				p.Addf("key.id", "not hex: %v", err)
			}
		}
		if c.Key.UseExisting && c.Type != TypeRoot {
			p.Addf("key.use_existing", "only a root ceremony may reuse a key")
		}
	}
	if present["signing_key"] {
		p.Require("signing_key.label", c.SigningKey.Label)
		p.Require("signing_key.id", c.SigningKey.ID)
		if _, err := hex.DecodeString(c.SigningKey.ID); err != nil {
			p.Addf("signing_key.id", "not hex: %v", err)
		}
	}
	if present["profile"] {
		c.validateProfile(&p)
	}
	if present["crl"] {
		c.validateCRL(&p)
	}
	if _, err := c.Limits.resolve(); err != nil {
		p.Addf("limits", "%v", err)
	}
	return p.Err()
}

func profileEmpty(pr Profile) bool {
	return pr.Subject == (Subject{}) && pr.NotBefore == "" && pr.NotAfter == "" && len(pr.KeyUsages) == 0 &&
		len(pr.ExtKeyUsages) == 0 && len(pr.Policies) == 0 && pr.CRLURL == "" && pr.IssuerURL == "" &&
		pr.OCSPURL == "" && pr.MaxPathLen == nil
}

func (c *Config) validateProfile(p *config.Problems) {
	pr := c.Profile
	if c.Type != TypeCross {
		p.Require("profile.subject.common_name", pr.Subject.CommonName)
	} else if pr.Subject != (Subject{}) {
		p.Addf("profile.subject", "a cross-certificate keeps the subject of the certificate it cross-signs")
	}
	nb, err1 := parseTime(pr.NotBefore)
	na, err2 := parseTime(pr.NotAfter)
	p.Add("profile.not_before", err1)
	p.Add("profile.not_after", err2)
	if err1 == nil && err2 == nil {
		if !na.After(nb) {
			p.Addf("profile.not_after", "%s is not after not_before %s", pr.NotAfter, pr.NotBefore)
		}
		limits, _ := c.Limits.resolve()
		var max time.Duration
		var which string
		switch c.Type {
		case TypeRoot:
			max, which = limits.root, "root_max_validity"
		case TypeIntermediate, TypeCross:
			max, which = limits.intermediate, "intermediate_max_validity"
		case TypeOCSPSigner:
			max, which = limits.ocspSigner, "ocsp_signer_max_validity"
		}
		if v := na.Sub(nb); max > 0 && v > max {
			p.Addf("profile.not_after", "validity of %s exceeds the limit of %s (limits.%s)", days(v), days(max), which)
		}
	}
	if _, err := keyUsages(pr.KeyUsages); err != nil {
		p.Addf("profile.key_usages", "%v", err)
	}
	if _, err := extKeyUsages(pr.ExtKeyUsages); err != nil {
		p.Addf("profile.ext_key_usages", "%v", err)
	}
	if _, err := policies(pr.Policies); err != nil {
		p.Addf("profile.policies", "%v", err)
	}
	if pr.MaxPathLen != nil && c.Type != TypeRoot {
		p.Addf("profile.max_path_len", "only a root takes max_path_len; intermediates are always 0")
	}
	if c.Type == TypeOCSPSigner && (len(pr.KeyUsages) > 0 || len(pr.ExtKeyUsages) > 0) {
		p.Addf("profile.key_usages", "an OCSP signer's usages are fixed (digitalSignature, id-kp-OCSPSigning)")
	}
}

func (c *Config) validateCRL(p *config.Problems) {
	if c.CRL.Number <= 0 {
		p.Addf("crl.number", "must be a positive integer")
	}
	if c.CRL.Covers != "" && c.CRL.Covers != "ca" && c.CRL.Covers != "subscribers" {
		p.Addf("crl.covers", "%q: want ca or subscribers", c.CRL.Covers)
	}
	tu, err1 := parseTime(c.CRL.ThisUpdate)
	nu, err2 := parseTime(c.CRL.NextUpdate)
	p.Add("crl.this_update", err1)
	p.Add("crl.next_update", err2)
	if err1 == nil && err2 == nil {
		limits, _ := c.Limits.resolve()
		if !nu.After(tu) {
			p.Addf("crl.next_update", "is not after this_update")
		} else if nu.Sub(tu) > limits.crl {
			p.Addf("crl.next_update", "%s after this_update exceeds the limit of %s (limits.crl_max_validity)", days(nu.Sub(tu)), days(limits.crl))
		}
	}
	for i, r := range c.CRL.Revoked {
		path := fmt.Sprintf("crl.revoked[%d]", i)
		if (r.Certificate == "") == (r.Serial == "") {
			p.Addf(path, "give exactly one of certificate and serial")
		}
		if r.Serial != "" {
			if _, err := hex.DecodeString(r.Serial); err != nil {
				p.Addf(path+".serial", "not hex: %v", err)
			}
		}
		if _, err := parseTime(r.RevokedAt); err != nil {
			p.Addf(path+".revoked_at", "%v", err)
		}
		if _, err := reasonCode(r.Reason); err != nil {
			p.Addf(path+".reason", "%v", err)
		}
	}
}

type resolvedLimits struct{ root, intermediate, ocspSigner, crl time.Duration }

func (l Limits) resolve() (resolvedLimits, error) {
	return resolvedLimits{
		root:         l.RootMaxValidity.Or(DefaultRootMaxValidity),
		intermediate: l.IntermediateMaxValidity.Or(DefaultIntermediateMaxValidity),
		ocspSigner:   l.OCSPSignerMaxValidity.Or(DefaultOCSPSignerMaxValidity),
		crl:          l.CRLMaxValidity.Or(DefaultCRLMaxValidity),
	}, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("is required (RFC 3339, e.g. 2026-01-01T00:00:00Z)")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (e.g. 2026-01-01T00:00:00Z)", s)
	}
	return t.UTC(), nil
}

func days(d time.Duration) string {
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}
