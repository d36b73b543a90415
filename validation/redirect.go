package validation

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// The http-01 redirect rules of the CA/Browser Forum Baseline Requirements
// (3.2.2.4.19, which 3.2.2.5 follows for IP addresses): a redirect is followed
// only when it is one of the four statuses below, to an http or https URL on
// an authorized port, and, as Boulder does, only to a DNS name. Every rule is
// checked before anything is resolved or connected to, and each refusal says
// which rule failed.

// followedRedirect reports whether an HTTP status is a redirect the BRs let
// validation follow: 301, 302, 307 and 308. A 303 (and any other 3xx) turns
// the request into something else than fetching the resource, so it fails.
func followedRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// redirectPorts are the ports a redirect may name: the validation HTTP and TLS
// ports (80 and 443 in production).
type redirectPorts struct{ http, tls int }

// redirectError is a redirect refused by one rule; its message is written for
// the subscriber and completes "Fetching <url>: ".
type redirectError struct{ rule string }

func (e *redirectError) Error() string { return e.rule }

func refuse(format string, args ...any) *redirectError {
	return &redirectError{rule: fmt.Sprintf(format, args...)}
}

// checkRedirectTarget decides whether the Location of a redirect from base may
// be followed, and returns the absolute URL to fetch with its host (a lower-case
// DNS name without a trailing dot) and the port to connect to. It is pure: it
// resolves nothing and connects nowhere, so it can be fuzzed.
//
// The host must be a DNS name: an IP literal in any spelling a URL parser,
// inet_aton or a browser accepts (dotted, bracketed IPv6, IPv4-mapped, decimal
// 2130706433, octal 0177.0.0.1, hex 0x7f.1, short 127.1, with a trailing dot)
// is refused, as is a percent-encoded or non-ASCII host and any userinfo,
// which only serve to make a host look like something else.
func checkRedirectTarget(base *url.URL, location string, ports redirectPorts) (*url.URL, string, int, error) {
	if len(location) > maxLocation {
		return nil, "", 0, refuse("redirect target is longer than %d bytes", maxLocation)
	}
	// Look at the authority as written, before a parser normalises it: a
	// '%' or '@' there is refused whatever the parser would make of it. It
	// is read twice, as Go and as a browser (backslash as slash) would.
	for _, backslashIsSlash := range []bool{false, true} {
		auth, ok := rawAuthority(location, backslashIsSlash)
		switch {
		case !ok:
		case strings.Contains(auth, "@"):
			return nil, "", 0, refuse("redirect to a URL with userinfo is not allowed")
		case strings.Contains(auth, "%"):
			return nil, "", 0, refuse("redirect to a percent-encoded host is not allowed")
		}
	}
	ref, err := url.Parse(location)
	if err != nil {
		return nil, "", 0, refuse("redirect target is not a valid URL")
	}
	u := base.ResolveReference(ref)
	var port int
	switch u.Scheme {
	case "http":
		port = ports.http
	case "https":
		port = ports.tls
	default:
		return nil, "", 0, refuse("redirect to scheme %s is not allowed (only http and https)", quote(u.Scheme, 16))
	}
	if u.User != nil {
		return nil, "", 0, refuse("redirect to a URL with userinfo is not allowed")
	}
	if u.Opaque != "" {
		return nil, "", 0, refuse("redirect target is not a valid URL")
	}
	host := u.Hostname()
	if strings.HasPrefix(u.Host, "[") || isIPLiteral(host) {
		return nil, "", 0, refuse("redirect to an IP address is not allowed")
	}
	if host == "" {
		return nil, "", 0, refuse("redirect target has no host")
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 || host[i] == '%' {
			return nil, "", 0, refuse("redirect to a percent-encoded or non-ASCII host is not allowed")
		}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || (n != ports.http && n != ports.tls) {
			if len(p) > 10 {
				p = p[:10] + "…"
			}
			return nil, "", 0, refuse("redirect to port %s is not allowed (only %d and %d)", p, ports.http, ports.tls)
		}
		port = n
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !isDNSName(host) {
		return nil, "", 0, refuse("redirect to host %s is not allowed: it is not a valid DNS name", quote(host, 64))
	}
	u.User, u.Fragment, u.RawFragment = nil, "", ""
	def := 80
	if u.Scheme == "https" {
		def = 443
	}
	u.Host = urlHost(host, port, def)
	return u, host, port, nil
}

// rawAuthority returns the authority of a URL reference as written, if it has
// one ("scheme://auth/..." or "//auth/..."), with backslashes read as
// slashes if backslashIsSlash, as browsers read them.
func rawAuthority(ref string, backslashIsSlash bool) (string, bool) {
	s := ref
	if backslashIsSlash {
		s = strings.ReplaceAll(ref, `\`, "/")
	}
	if i := strings.IndexAny(s, ":/?#"); i > 0 && s[i] == ':' {
		s = s[i+1:]
	}
	rest, ok := strings.CutPrefix(s, "//")
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// isIPLiteral reports whether a URL host (brackets removed) is an IP address
// in any spelling some resolver or URL parser accepts: anything netip parses,
// anything with a colon, and any host whose last label is a number (decimal,
// octal with a leading 0, or hex with 0x), which is how the WHATWG URL
// standard and inet_aton decide a host is IPv4: "2130706433", "0177.0.0.1",
// "0x7f.1", "127.1" and "127.0.0.1." all are. No top-level domain is numeric,
// so no real name is lost.
func isIPLiteral(host string) bool {
	if strings.Contains(host, ":") {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	h := strings.TrimSuffix(host, ".")
	last := h[strings.LastIndex(h, ".")+1:]
	if last == "" {
		return false
	}
	if hex, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}
