package validation

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzRedirectTarget feeds checkRedirectTarget hostile Location values (seed
// corpus in testdata/fuzz/FuzzRedirectTarget, run by `go test`; `go test
// -fuzz FuzzRedirectTarget ./validation/` explores further). It must never
// panic, and whatever it accepts must be an http or https URL without
// userinfo, on a validation port, whose host is a DNS name that no parser
// would take for an IP address, and which parses back to that same host.
func FuzzRedirectTarget(f *testing.F) {
	for _, s := range []string{
		"/elsewhere", "http://example.test/x", "https://Other.Test./x#f", "//example.test/",
		"http://127.0.0.1/", "http://[::1]/", "http://2130706433/", "http://0x7f.1/",
	} {
		f.Add(s)
	}
	base, err := url.Parse("http://example.test/.well-known/acme-challenge/tok")
	if err != nil {
		f.Fatal(err)
	}
	ports := redirectPorts{http: 80, tls: 443}
	f.Fuzz(func(t *testing.T, location string) {
		u, host, port, err := checkRedirectTarget(base, location, ports)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty refusal for %q", location)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q accepted with scheme %q", location, u.Scheme)
		}
		if u.User != nil {
			t.Fatalf("%q accepted with userinfo", location)
		}
		if port != ports.http && port != ports.tls {
			t.Fatalf("%q accepted on port %d", location, port)
		}
		if looksLikeIP(host) {
			t.Fatalf("%q accepted with the IP-literal host %q", location, host)
		}
		if !isDNSName(host) || host != strings.ToLower(host) {
			t.Fatalf("%q accepted with the host %q, not a lower-case DNS name", location, host)
		}
		// What is fetched is what was checked: the URL parses back to the
		// same host and port.
		back, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("%q accepted as %q, which does not parse: %v", location, u, err)
		}
		if back.Hostname() != host {
			t.Fatalf("%q accepted for host %q, but %q has host %q", location, host, u, back.Hostname())
		}
		if p := back.Port(); p != "" && p != strconv.Itoa(port) {
			t.Fatalf("%q accepted for port %d, but %q has port %s", location, port, u, p)
		}
	})
}

// looksLikeIP is the fuzz oracle, written apart from isIPLiteral: a host is
// an IP address if netip reads it, if it has a colon or bracket, or if
// inet_aton would read it — one to four dot-separated parts (a trailing dot
// allowed), each decimal, octal (leading 0) or hex (0x).
func looksLikeIP(host string) bool {
	if strings.ContainsAny(host, ":[]") {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if !cNumber(p) {
			return false
		}
	}
	return true
}

func cNumber(p string) bool {
	lp := strings.ToLower(p)
	digits := "0123456789"
	switch {
	case p == "":
		return false
	case strings.HasPrefix(lp, "0x"):
		lp, digits = lp[2:], "0123456789abcdef"
		if lp == "" {
			return true
		}
	case strings.HasPrefix(lp, "0"):
		digits = "01234567"
	}
	return strings.Trim(lp, digits) == ""
}
