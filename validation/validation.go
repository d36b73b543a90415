package validation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Identifier types (RFC 8555 §9.7.7, RFC 8738).
const (
	IdentifierDNS = "dns"
	IdentifierIP  = "ip"
)

// Challenge types this package validates.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Identifier is what a challenge proves control of: Type "dns" with a DNS name
// (a wildcard "*.example.com" is accepted and validated as example.com where
// the challenge type allows it), or Type "ip" with an IPv4 or IPv6 address.
type Identifier struct {
	Type  string
	Value string
}

// Validator runs validation attempts and CAA checks. It is safe for concurrent
// use and holds no state between calls.
type Validator struct {
	cfg      Config
	resolver *resolver
}

// New checks cfg, applies its defaults, and finds the resolvers (reading
// /etc/resolv.conf if cfg names none).
func New(cfg Config) (*Validator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validation config: %w", err)
	}
	cfg = cfg.withDefaults()
	var servers []string
	for _, r := range cfg.Resolvers {
		s, err := parseResolver(r)
		if err != nil {
			return nil, fmt.Errorf("validation config: %w", err)
		}
		servers = append(servers, s)
	}
	if len(servers) == 0 {
		var err error
		if servers, err = systemResolvers(resolvConfPath); err != nil {
			return nil, fmt.Errorf("validation config: %w", err)
		}
	}
	return &Validator{
		cfg:      cfg,
		resolver: &resolver{servers: servers, timeout: cfg.DNSTimeout.Duration},
	}, nil
}

// Validate performs one validation attempt of challenge type typ ("http-01",
// "dns-01" or "tls-alpn-01") for ident, with the challenge's token and the key
// authorization the caller computed (token "." base64url(JWK thumbprint)).
// It returns nil on success, or a *Problem saying why the attempt failed.
// The attempt ends by Config.Timeout or when ctx ends, whichever comes first.
func (v *Validator) Validate(ctx context.Context, ident Identifier, typ, token, keyAuthorization string) error {
	// The token goes into a URL path and the key authorization into a
	// comparison; both come from our own ACME layer, so anything odd is a bug.
	if !isBase64URL(token) || len(token) > 256 {
		return newProblem(ProblemServerInternal, errors.New("token is not base64url"), "the challenge token is malformed")
	}
	if thumb, ok := strings.CutPrefix(keyAuthorization, token+"."); !ok || !isBase64URL(thumb) || len(thumb) > 256 {
		return newProblem(ProblemServerInternal, errors.New("key authorization is not token.thumbprint"), "the key authorization is malformed")
	}
	t, prob := v.parseIdentifier(ident)
	if prob != nil {
		return prob
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout.Duration)
	defer cancel()
	switch typ {
	case ChallengeHTTP01:
		if t.wildcard {
			return newProblem(ProblemMalformed, nil, "http-01 cannot validate a wildcard name; use dns-01")
		}
		return nilIfNoProblem(v.validateHTTP01(ctx, v.newAttempt(), t, token, keyAuthorization))
	case ChallengeDNS01:
		if t.isIP() {
			return newProblem(ProblemMalformed, nil, "dns-01 cannot validate an IP address (RFC 8738 §7)")
		}
		return nilIfNoProblem(v.validateDNS01(ctx, t, keyAuthorization))
	case ChallengeTLSALPN01:
		if t.wildcard {
			return newProblem(ProblemMalformed, nil, "tls-alpn-01 cannot validate a wildcard name; use dns-01")
		}
		return nilIfNoProblem(v.validateTLSALPN01(ctx, v.newAttempt(), t, keyAuthorization))
	case ChallengeSimpleHTTPS:
		if t.wildcard || t.isIP() {
			return newProblem(ProblemMalformed, nil, "simpleHttps validates DNS names only, not wildcards or IP addresses")
		}
		return nilIfNoProblem(v.validateSimpleHTTPS(ctx, v.newAttempt(), t, token))
	default:
		return newProblem(ProblemMalformed, nil, "unsupported challenge type %s", quote(typ, 32))
	}
}

// nilIfNoProblem avoids returning a typed nil pointer as a non-nil error.
func nilIfNoProblem(p *Problem) error {
	if p == nil {
		return nil
	}
	return p
}

// target is a parsed identifier: a DNS name (lower case, no trailing dot, no
// "*." prefix) or an IP address.
type target struct {
	name     string
	ip       netip.Addr
	wildcard bool
}

func (t target) isIP() bool { return t.ip.IsValid() }

func (t target) String() string {
	if t.isIP() {
		return t.ip.String()
	}
	return t.name
}

func (v *Validator) parseIdentifier(ident Identifier) (target, *Problem) {
	switch ident.Type {
	case IdentifierDNS:
		name := strings.ToLower(strings.TrimSuffix(ident.Value, "."))
		var t target
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			t.wildcard, name = true, rest
		}
		if !isDNSName(name) {
			return target{}, newProblem(ProblemMalformed, nil, "%s is not a valid DNS name", quote(ident.Value, 64))
		}
		t.name = name
		return t, nil
	case IdentifierIP:
		ip, err := netip.ParseAddr(ident.Value)
		if err != nil || ip.Zone() != "" {
			return target{}, newProblem(ProblemMalformed, err, "%s is not a valid IP address", quote(ident.Value, 64))
		}
		if why := v.addrRefusal(ip); why != "" {
			return target{}, newProblem(ProblemRejectedIdentifier, nil, "%s is not a public address (%s); this CA does not validate it", ip, why)
		}
		return target{ip: ip}, nil
	default:
		return target{}, newProblem(ProblemMalformed, nil, "unsupported identifier type %s", quote(ident.Type, 32))
	}
}

// isDNSName reports whether s is a name we are willing to look up and put in
// a URL: dot-separated labels of 1–63 letters, digits, hyphens or underscores,
// no hyphen at either end of a label, at most 253 bytes, and not an IP literal.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func isBase64URL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
