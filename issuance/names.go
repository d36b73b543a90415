package issuance

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// NormalizeDNSName returns the canonical form of a requested DNS name (lower
// case) or says why it is refused: only letters, digits and hyphens, labels of
// 1 to 63 characters that neither start nor end with a hyphen, at most 253
// characters, no trailing dot, every "xn--" label a valid IDNA2008 A-label
// (checkALabel), a wildcard only as the whole leftmost label of a
// name of three labels or more, and no IP address written as a name. Whether a
// single-label name such as "localhost" may be certified is policy's call.
func NormalizeDNSName(name string) (string, error) {
	// ASCII first: strings.ToLower maps a few non-ASCII letters to ASCII ones
	// (U+212A Kelvin sign to "k", U+0130 to "i"), which would make a name the
	// applicant did not write. An IDN arrives as its xn-- A-label.
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "", fmt.Errorf("%w: %q has a non-ASCII character; send an internationalized name as its xn-- A-label", ErrRejectedName, name)
		}
	}
	n := strings.ToLower(name)
	if n == "" {
		return "", fmt.Errorf("%w: empty DNS name", ErrRejectedName)
	}
	if len(n) > 253 {
		return "", fmt.Errorf("%w: %q is longer than 253 characters", ErrRejectedName, name)
	}
	if strings.HasSuffix(n, ".") {
		return "", fmt.Errorf("%w: %q ends with a dot", ErrRejectedName, name)
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return "", fmt.Errorf("%w: %q is an IP address, not a DNS name", ErrRejectedName, name)
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" {
			if i != 0 {
				return "", fmt.Errorf("%w: %q has a wildcard that is not the leftmost label", ErrRejectedName, name)
			}
			if len(labels) < 3 {
				return "", fmt.Errorf("%w: %q is a wildcard directly below a top-level domain", ErrRejectedName, name)
			}
			continue
		}
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrRejectedName, name, err)
		}
	}
	if _, err := netip.ParseAddr(labels[len(labels)-1]); err == nil || isAllDigits(labels[len(labels)-1]) {
		return "", fmt.Errorf("%w: %q has an all-numeric top-level label", ErrRejectedName, name)
	}
	return n, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case strings.Contains(l, "*"):
		return fmt.Errorf("label %q holds a wildcard character; a wildcard must be a whole label", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	case len(l) >= 4 && l[2:4] == "--" && !strings.HasPrefix(l, "xn--"):
		return fmt.Errorf("label %q has hyphens in positions 3 and 4 but is not an xn-- label", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has the character %q; only letters, digits and hyphens are allowed", l, c)
		}
	}
	if strings.HasPrefix(l, "xn--") {
		return checkALabel(l)
	}
	return nil
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// NormalizeIP returns the canonical form of an IP address for a certificate:
// 4 bytes for IPv4 (an IPv4-mapped IPv6 address becomes plain IPv4), 16 for
// IPv6. Unspecified, zoned or malformed addresses are refused.
func NormalizeIP(ip net.IP) (net.IP, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return nil, fmt.Errorf("%w: malformed IP address (%d bytes)", ErrRejectedName, len(ip))
	}
	a = a.Unmap()
	if a.IsUnspecified() {
		return nil, fmt.Errorf("%w: unspecified IP address %s", ErrRejectedName, a)
	}
	return net.IP(a.AsSlice()), nil
}
