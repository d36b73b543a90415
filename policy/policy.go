// Package policy owns the CA's identifier policy: which DNS names and IP
// addresses it will certify at all. The ACME front end applies it to new orders;
// the issuance service applies it again on its own before signing, so that a
// compromised front end cannot get a name outside policy.
//
// Syntax (what a well-formed name is) belongs to issuance; this package decides
// only what is allowed.
package policy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/anvil-pki/anvil/issuance"
)

// Config is the identifier policy in YAML.
type Config struct {
	// AllowedSuffixes limits DNS names to these domains and the names below
	// them ("example.com" allows example.com and www.example.com). Empty allows
	// any syntactically valid name.
	AllowedSuffixes []string `yaml:"allowed_suffixes"`
	// DeniedNames refuses these names and every name below them.
	DeniedNames []string `yaml:"denied_names"`
	// AllowWildcards permits "*.example.com" identifiers (default true).
	AllowWildcards *bool `yaml:"allow_wildcards"`
	// AllowedIPRanges permits IP address identifiers in these CIDR ranges.
	// Empty refuses every IP identifier.
	AllowedIPRanges []string `yaml:"allowed_ip_ranges"`
	// AllowSingleLabel permits names of one label ("localhost", "intranet"),
	// which no public CA may certify. For closed networks and development.
	AllowSingleLabel bool `yaml:"allow_single_label"`
	// AllowSpecialUse lets names equal to or under these special-use suffixes
	// be issued (each must be one of SpecialUseSuffixes): "localhost" for
	// development, "test" or "internal" for a closed network. By default every
	// special-use name is refused.
	AllowSpecialUse []string `yaml:"allow_special_use"`
}

// specialUse is each special-use or reserved suffix, with the document that
// reserves it. No public CA may certify a name under them (they never resolve
// in the global DNS, or mean something else locally), so they are refused by
// default whatever AllowedSuffixes says.
var specialUse = []struct{ suffix, why string }{
	{"local", "RFC 6762, multicast DNS"},
	{"localhost", "RFC 6761, loopback"},
	{"invalid", "RFC 6761, never resolves"},
	{"test", "RFC 6761, testing"},
	{"example", "RFC 6761, documentation"},
	{"example.com", "RFC 6761, documentation"},
	{"example.net", "RFC 6761, documentation"},
	{"example.org", "RFC 6761, documentation"},
	{"onion", "RFC 7686, Tor onion services"},
	{"alt", "RFC 9476, non-DNS namespaces"},
	{"home.arpa", "RFC 8375, home networks"},
	{"ipv4only.arpa", "RFC 8880, NAT64 discovery"},
	{"resolver.arpa", "RFC 9462, resolver discovery"},
	{"service.arpa", "RFC 9665, service registration"},
	{"6tisch.arpa", "RFC 9031, 6TiSCH networks"},
	{"in-addr.arpa", "RFC 6761 section 6.1 and RFC 1035, reverse mapping of IPv4 addresses"},
	{"ip6.arpa", "RFC 3596, reverse mapping of IPv6 addresses"},
	{"internal", "ICANN-reserved for private use"},
}

// SpecialUseSuffixes lists the special-use suffixes refused by default, the
// values policy.allow_special_use may name.
func SpecialUseSuffixes() []string {
	out := make([]string, len(specialUse))
	for i, s := range specialUse {
		out[i] = s.suffix
	}
	return out
}

// Rules is a checked Config.
type Rules struct {
	single    bool
	allowed   []string
	denied    []string
	wildcards bool
	ipRanges  []netip.Prefix
	// specialAllowed holds the special-use suffixes the operator allowed.
	specialAllowed map[string]bool
}

// New checks a Config.
func New(c Config) (*Rules, error) {
	r := &Rules{wildcards: c.AllowWildcards == nil || *c.AllowWildcards, single: c.AllowSingleLabel}
	for _, s := range c.AllowedSuffixes {
		n, err := issuance.NormalizeDNSName(strings.TrimPrefix(s, "."))
		if err != nil && !isSingleLabel(s) {
			return nil, fmt.Errorf("policy.allowed_suffixes: %w", err)
		}
		if err != nil {
			n = strings.ToLower(strings.TrimPrefix(s, "."))
		}
		r.allowed = append(r.allowed, n)
	}
	r.specialAllowed = map[string]bool{}
	for _, s := range c.AllowSpecialUse {
		n := strings.ToLower(strings.Trim(s, "."))
		if !slices.Contains(SpecialUseSuffixes(), n) {
			return nil, fmt.Errorf("policy.allow_special_use: %q is not a special-use suffix (want some of %s)", s, strings.Join(SpecialUseSuffixes(), ", "))
		}
		r.specialAllowed[n] = true
	}
	for _, s := range c.DeniedNames {
		r.denied = append(r.denied, strings.ToLower(strings.TrimPrefix(s, ".")))
	}
	for _, s := range c.AllowedIPRanges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("policy.allowed_ip_ranges: %q: %w", s, err)
		}
		r.ipRanges = append(r.ipRanges, p.Masked())
	}
	return r, nil
}

// isSingleLabel lets a top-level suffix such as "test" or "internal" be allowed
// as a suffix, though it is not a name that can be certified itself.
func isSingleLabel(s string) bool {
	s = strings.TrimPrefix(s, ".")
	return s != "" && !strings.Contains(s, ".")
}

// CheckDNSName returns the canonical name and whether it is a wildcard, or an
// error wrapping issuance.ErrRejectedName that says why it is refused.
func (r *Rules) CheckDNSName(name string) (string, bool, error) {
	n, err := issuance.NormalizeDNSName(name)
	if err != nil {
		return "", false, err
	}
	wildcard := strings.HasPrefix(n, "*.")
	if wildcard && !r.wildcards {
		return "", false, fmt.Errorf("%w: wildcard names are not issued here", issuance.ErrRejectedName)
	}
	base := strings.TrimPrefix(n, "*.")
	for _, su := range specialUse {
		if under(base, su.suffix) && !r.specialAllowed[su.suffix] {
			return "", false, fmt.Errorf("%w: %q is a special-use name under %q (%s) and is not issued here", issuance.ErrRejectedName, n, su.suffix, su.why)
		}
	}
	if !r.single && !strings.Contains(base, ".") {
		return "", false, fmt.Errorf("%w: %q has a single label", issuance.ErrRejectedName, n)
	}
	for _, d := range r.denied {
		if under(base, d) {
			return "", false, fmt.Errorf("%w: %q is denied by policy", issuance.ErrRejectedName, n)
		}
	}
	if len(r.allowed) > 0 {
		ok := false
		for _, a := range r.allowed {
			if under(base, a) {
				ok = true
				break
			}
		}
		if !ok {
			return "", false, fmt.Errorf("%w: %q is outside the domains this CA issues for", issuance.ErrRejectedName, n)
		}
	}
	return n, wildcard, nil
}

// CheckIP returns the canonical text of an IP identifier (RFC 8738; RFC 5952
// for IPv6), or an error wrapping issuance.ErrRejectedName.
func (r *Rules) CheckIP(value string) (string, error) {
	a, err := netip.ParseAddr(value)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%w: %q is not an IP address", issuance.ErrRejectedName, value)
	}
	a = a.Unmap()
	if a.String() != value {
		return "", fmt.Errorf("%w: %q is not in canonical form (%s)", issuance.ErrRejectedName, value, a)
	}
	for _, p := range r.ipRanges {
		if p.Contains(a) {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("%w: IP address %s is outside the ranges this CA issues for", issuance.ErrRejectedName, a)
}

// CheckNames implements issuance.NamePolicy: the signer's own check.
func (r *Rules) CheckNames(dnsNames []string, ips []net.IP) error {
	for _, n := range dnsNames {
		if _, _, err := r.CheckDNSName(n); err != nil {
			return err
		}
	}
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return fmt.Errorf("%w: malformed IP address", issuance.ErrRejectedName)
		}
		if _, err := r.CheckIP(a.Unmap().String()); err != nil {
			return err
		}
	}
	return nil
}

// under reports whether name is domain or a name below it.
func under(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

var _ issuance.NamePolicy = (*Rules)(nil)
