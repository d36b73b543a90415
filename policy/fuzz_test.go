package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

func fuzzRules(t testing.TB) (open, strict *Rules) {
	no := false
	open, err := New(Config{AllowSingleLabel: true, AllowedIPRanges: []string{"0.0.0.0/0", "::/0"}})
	if err != nil {
		t.Fatal(err)
	}
	strict, err = New(Config{AllowedSuffixes: []string{"example.com"}, DeniedNames: []string{"bad.example.com"},
		AllowWildcards: &no, AllowedIPRanges: []string{"192.0.2.0/24", "2001:db8::/32"}})
	if err != nil {
		t.Fatal(err)
	}
	return open, strict
}

// FuzzCheckDNSName: whatever name an applicant sends, CheckDNSName never
// panics, refuses with ErrRejectedName, and returns only a name of ASCII
// letters, digits, hyphens and dots that is the request in lower case
// (no other rewriting: "\u212a" (Kelvin sign) must not become "k"), at most
// 253 characters in labels of 1 to 63, a wildcard only as the whole first
// label, and canonical (checking it again gives it back). Under the strict
// rules it is below an allowed suffix and not below a denied name.
func FuzzCheckDNSName(f *testing.F) {
	for _, s := range []string{
		"example.com", "WWW.Example.COM", "*.example.com", "a.*.example.com", "*.com", "localhost",
		"bad.example.com", "x.bad.example.com", "notexample.com", "example.com.", ".example.com",
		"xn--bcher-kva.example", "xn--.example.com", "ab--c.example.com", "-a.example.com",
		"1.2.3.4", "[::1]", "::1", "2130706433", "0x7f.1", "example.123", "a_b.example.com",
		"\u212aexample.com", "ex\u0130mple.com", "b\u00fccher.example", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "com", "", ".", "*",
	} {
		f.Add(s)
	}
	open, strict := fuzzRules(f)
	f.Fuzz(func(t *testing.T, name string) {
		for which, r := range map[string]*Rules{"open": open, "strict": strict} {
			n, wildcard, err := r.CheckDNSName(name)
			if err != nil {
				if !errors.Is(err, issuance.ErrRejectedName) {
					t.Fatalf("%s: untyped refusal of %q: %v", which, name, err)
				}
				continue
			}
			if n != asciiLower(name) {
				t.Fatalf("%s: %q accepted as %q, not as itself in lower case", which, name, n)
			}
			if len(n) > 253 || wildcard != strings.HasPrefix(n, "*.") {
				t.Fatalf("%s: %q: length %d, wildcard %v", which, n, len(n), wildcard)
			}
			for i, l := range strings.Split(n, ".") {
				if l == "*" && i == 0 {
					continue
				}
				if len(l) < 1 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
					t.Fatalf("%s: %q has label %q", which, n, l)
				}
				for j := 0; j < len(l); j++ {
					if c := l[j]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
						t.Fatalf("%s: %q has the byte %q", which, n, c)
					}
				}
			}
			if _, err := netip.ParseAddr(n); err == nil {
				t.Fatalf("%s: IP address %q accepted as a DNS name", which, n)
			}
			if again, w2, err := r.CheckDNSName(n); err != nil || again != n || w2 != wildcard {
				t.Fatalf("%s: %q is not canonical: %q %v %v", which, n, again, w2, err)
			}
			base := strings.TrimPrefix(n, "*.")
			if which == "strict" && (wildcard || under(base, "bad.example.com") || !under(base, "example.com")) {
				t.Fatalf("strict: %q accepted", n)
			}
			if which == "strict" && !strings.Contains(base, ".") {
				t.Fatalf("strict: single label %q accepted", n)
			}
		}
	})
}

// asciiLower lower-cases ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzCheckIP: an IP identifier is accepted only in its one canonical text
// (RFC 8738, RFC 5952: no leading zeros, no IPv4-mapped, no zone, no decimal,
// octal or hex spelling), it comes back unchanged, and it lies in an allowed
// range.
func FuzzCheckIP(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1", "192.000.002.001", "0300.0.2.1", "0xc0.0.2.1", "3221225985", "::ffff:192.0.2.1",
		"2001:db8::1", "2001:DB8::1", "2001:0db8::1", "2001:db8:0:0:0:0:0:1", "fe80::1%eth0", "[::1]",
		"127.0.0.1", "::", "0.0.0.0", "1.2.3", "192.0.2.1 ", "",
	} {
		f.Add(s)
	}
	open, strict := fuzzRules(f)
	f.Fuzz(func(t *testing.T, value string) {
		for which, r := range map[string]*Rules{"open": open, "strict": strict} {
			got, err := r.CheckIP(value)
			if err != nil {
				if !errors.Is(err, issuance.ErrRejectedName) {
					t.Fatalf("%s: untyped refusal of %q: %v", which, value, err)
				}
				continue
			}
			a, err := netip.ParseAddr(value)
			if err != nil || got != value || a.String() != value || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("%s: %q accepted as %q", which, value, got)
			}
			in := false
			for _, p := range r.ipRanges {
				in = in || p.Contains(a)
			}
			if !in {
				t.Fatalf("%s: %q is outside the allowed ranges", which, value)
			}
			if again, err := r.CheckIP(got); err != nil || again != got {
				t.Fatalf("%s: %q not canonical: %q %v", which, got, again, err)
			}
		}
	})
}
