package issuance

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/config"
)

// ProfileConfig is one certificate profile in YAML.
type ProfileConfig struct {
	Description       string          `yaml:"description"`
	Validity          config.Duration `yaml:"validity"`            // default 90d
	Backdate          config.Duration `yaml:"backdate"`            // default 1h: tolerates clients' clock skew
	KeyUsages         []string        `yaml:"key_usages"`          // default [digitalSignature]
	ExtKeyUsages      []string        `yaml:"ext_key_usages"`      // default [serverAuth]
	IncludeCommonName bool            `yaml:"include_common_name"` // keep a CN (the CSR's, else the first short name)
	MaxNames          int             `yaml:"max_names"`           // default 100
	Policies          []string        `yaml:"policies"`            // default [2.23.140.1.2.1] (domain validated)
	IgnoredLints      []string        `yaml:"ignored_lints"`       // zlint names whose errors do not stop issuance
}

// Profile is a checked ProfileConfig: what a certificate of this kind looks like.
type Profile struct {
	Name              string
	Description       string
	Validity          time.Duration
	Backdate          time.Duration
	KeyUsage          x509.KeyUsage // keyEncipherment applies to RSA subject keys only
	ExtKeyUsage       []x509.ExtKeyUsage
	IncludeCommonName bool
	MaxNames          int
	Policies          []x509.OID
	linter            *linter
}

// Profile defaults.
const (
	DefaultValidity = 90 * 24 * time.Hour
	DefaultBackdate = time.Hour
	DefaultMaxNames = 100
)

var keyUsageNames = map[string]x509.KeyUsage{
	"digitalSignature": x509.KeyUsageDigitalSignature,
	"keyEncipherment":  x509.KeyUsageKeyEncipherment,
}

var extKeyUsageNames = map[string]x509.ExtKeyUsage{
	"serverAuth": x509.ExtKeyUsageServerAuth,
	"clientAuth": x509.ExtKeyUsageClientAuth,
}

// NewProfile checks a profile's configuration; errors name the YAML path
// "profiles.<name>.<field>".
func NewProfile(name string, c ProfileConfig) (*Profile, error) {
	path := "profiles." + name
	var problems config.Problems
	p := &Profile{
		Name:              name,
		Description:       c.Description,
		Validity:          c.Validity.Or(DefaultValidity),
		Backdate:          c.Backdate.Or(DefaultBackdate),
		IncludeCommonName: c.IncludeCommonName,
		MaxNames:          c.MaxNames,
	}
	if name == "" {
		problems.Addf("profiles", "a profile has an empty name")
	}
	if p.MaxNames == 0 {
		p.MaxNames = DefaultMaxNames
	}
	if p.MaxNames < 0 {
		problems.Addf(path+".max_names", "must be positive")
	}
	if p.Backdate >= p.Validity {
		problems.Addf(path+".backdate", "%s is not shorter than the validity %s", p.Backdate, p.Validity)
	}
	usages := c.KeyUsages
	if len(usages) == 0 {
		usages = []string{"digitalSignature"}
	}
	for _, u := range usages {
		ku, ok := keyUsageNames[u]
		if !ok {
			problems.Addf(path+".key_usages", "unknown key usage %q (want digitalSignature or keyEncipherment)", u)
		}
		p.KeyUsage |= ku
	}
	ekus := c.ExtKeyUsages
	if len(ekus) == 0 {
		ekus = []string{"serverAuth"}
	}
	for _, u := range ekus {
		eku, ok := extKeyUsageNames[u]
		if !ok {
			problems.Addf(path+".ext_key_usages", "unknown extended key usage %q (want serverAuth or clientAuth)", u)
		}
		p.ExtKeyUsage = append(p.ExtKeyUsage, eku)
	}
	policies := c.Policies
	if policies == nil {
		policies = []string{"2.23.140.1.2.1"}
	}
	for _, s := range policies {
		oid, err := parseOID(s)
		if err != nil {
			problems.Addf(path+".policies", "%v", err)
			continue
		}
		p.Policies = append(p.Policies, oid)
	}
	lt, err := newLinter(c.IgnoredLints)
	if err != nil {
		problems.Addf(path+".ignored_lints", "%v", err)
	}
	p.linter = lt
	if err := problems.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func parseOID(s string) (x509.OID, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return x509.OID{}, fmt.Errorf("policy %q is not a dotted OID", s)
	}
	ints := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return x509.OID{}, fmt.Errorf("policy %q is not a dotted OID", s)
		}
		ints[i] = n
	}
	return x509.OIDFromInts(toUint64(ints))
}

func toUint64(o asn1.ObjectIdentifier) []uint64 {
	out := make([]uint64, len(o))
	for i, n := range o {
		out[i] = uint64(n)
	}
	return out
}
