package validation

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/miekg/dns"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultHTTPPort       = 80
	DefaultTLSPort        = 443
	DefaultTimeout        = 20 * time.Second
	DefaultDNSTimeout     = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxRedirects   = 10
	DefaultMaxBodyBytes   = 8 << 10
	DefaultUserAgent      = "anvil-validation/1"

	// maxBodyLimit caps MaxBodyBytes: a key authorization is under 200 bytes,
	// and a larger limit would only let targets make the CA read more.
	maxBodyLimit = 1 << 20
)

// resolvConfPath is where New finds the system resolvers when none are configured.
var resolvConfPath = "/etc/resolv.conf"

// Config is the validation section of the front end's configuration. Its zero
// value (plus CAAIdentities) is the production setting: public targets only,
// standard ports, CAA enforced.
type Config struct {
	// Resolvers are the recursive resolvers every lookup goes to, as IP or
	// IP:port ("127.0.0.1:5353", "[::1]:53"; the port defaults to 53), tried in
	// order. Names are not accepted: resolving the resolver would need a
	// resolver. Empty means the nameservers of /etc/resolv.conf, read once by New.
	// DNSSEC validation, if wanted, is these resolvers' job.
	Resolvers []string `yaml:"resolvers"`
	// HTTPPort is where http-01 connects, and the port an "http" redirect
	// without a port goes to. Default 80; tests and closed networks change it.
	HTTPPort int `yaml:"http_port"`
	// TLSPort is where tls-alpn-01 connects, and the port an "https" redirect
	// without a port goes to. Default 443.
	TLSPort int `yaml:"tls_port"`
	// Timeout bounds one whole attempt (Validate or CheckCAA): every lookup,
	// connection, redirect and read. Default 20s.
	Timeout config.Duration `yaml:"timeout"`
	// DNSTimeout bounds one DNS query to one resolver. Default 5s.
	DNSTimeout config.Duration `yaml:"dns_timeout"`
	// ConnectTimeout bounds one TCP connect, so an unreachable IPv6 address
	// leaves time to try IPv4. Default 5s.
	ConnectTimeout config.Duration `yaml:"connect_timeout"`
	// MaxRedirects is how many redirects http-01 follows. 0 means the default
	// of 10; -1 means none. More than 10 is refused: the Baseline
	// Requirements' redirect rules are followed by peers with that limit, and
	// each hop is one more request a target can make the CA send.
	MaxRedirects int `yaml:"max_redirects"`
	// MaxBodyBytes is how much of an http-01 response body is read; a longer
	// body fails the challenge. Default 8 KiB, at most 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// UserAgent is sent with every http-01 request.
	UserAgent string `yaml:"user_agent"`
	// DisableCAA turns CheckCAA into a no-op, for closed networks whose names
	// are not in public DNS. Never set it for a publicly trusted CA.
	DisableCAA bool `yaml:"disable_caa"`
	// CAAIdentities are the issuer domain names by which CAA "issue" and
	// "issuewild" records name this CA (e.g. "anvil.example"). Required unless
	// DisableCAA.
	CAAIdentities []string `yaml:"caa_identities"`
	// AllowPrivateTargets lets validation connect to loopback, private,
	// link-local, shared and documentation addresses, and accept IP identifiers
	// in those ranges. Tests and closed internal networks need it; a public CA
	// must leave it false. Unspecified, multicast and broadcast addresses stay
	// refused either way.
	AllowPrivateTargets bool `yaml:"allow_private_targets"`
}

// Validate checks c as config.Decode does after decoding. Paths are relative
// to the section.
func (c *Config) Validate() error {
	var p config.Problems
	for i, r := range c.Resolvers {
		if _, err := parseResolver(r); err != nil {
			p.Addf(fmt.Sprintf("resolvers[%d]", i), "%v", err)
		}
	}
	checkPort := func(path string, port int) {
		if port < 0 || port > 65535 {
			p.Addf(path, "%d is not a TCP port", port)
		}
	}
	checkPort("http_port", c.HTTPPort)
	checkPort("tls_port", c.TLSPort)
	for path, d := range map[string]config.Duration{"timeout": c.Timeout, "dns_timeout": c.DNSTimeout, "connect_timeout": c.ConnectTimeout} {
		if d.Duration < 0 {
			p.Addf(path, "must not be negative")
		}
	}
	if c.MaxRedirects < -1 || c.MaxRedirects > DefaultMaxRedirects {
		p.Addf("max_redirects", "must be -1 (none), 0 (default, %d) or a count up to %d", DefaultMaxRedirects, DefaultMaxRedirects)
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > maxBodyLimit {
		p.Addf("max_body_bytes", "must be between 0 (default) and %d", maxBodyLimit)
	}
	if strings.ContainsAny(c.UserAgent, "\r\n\x00") {
		p.Addf("user_agent", "must be a single line")
	}
	if !c.DisableCAA && len(c.CAAIdentities) == 0 {
		p.Addf("caa_identities", "is required unless disable_caa is true")
	}
	for i, id := range c.CAAIdentities {
		if !isIssuerDomainName(strings.TrimSpace(id)) {
			p.Addf(fmt.Sprintf("caa_identities[%d]", i), "%q is not a domain name", id)
		}
	}
	return p.Err()
}

// withDefaults returns c with zero fields set to their defaults and values
// normalised for comparison.
func (c Config) withDefaults() Config {
	if c.HTTPPort == 0 {
		c.HTTPPort = DefaultHTTPPort
	}
	if c.TLSPort == 0 {
		c.TLSPort = DefaultTLSPort
	}
	c.Timeout.Duration = c.Timeout.Or(DefaultTimeout)
	c.DNSTimeout.Duration = c.DNSTimeout.Or(DefaultDNSTimeout)
	c.ConnectTimeout.Duration = c.ConnectTimeout.Or(DefaultConnectTimeout)
	switch {
	case c.MaxRedirects == 0:
		c.MaxRedirects = DefaultMaxRedirects
	case c.MaxRedirects < 0:
		c.MaxRedirects = 0
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	ids := make([]string, 0, len(c.CAAIdentities))
	for _, id := range c.CAAIdentities {
		ids = append(ids, strings.ToLower(strings.TrimSpace(id)))
	}
	c.CAAIdentities = ids
	return c
}

// parseResolver turns "IP" or "IP:port" into "IP:port".
func parseResolver(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 && ap.Addr().Zone() == "" {
		return ap.String(), nil
	}
	return "", fmt.Errorf("%q: want an IP address with an optional port, e.g. 127.0.0.1:5353", s)
}

// systemResolvers reads the nameservers of a resolv.conf file.
func systemResolvers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	var out []string
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue // e.g. a scoped address; we would not know the interface
		}
		out = append(out, net.JoinHostPort(a.String(), cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no usable nameserver in %s", path)
	}
	if _, err := strconv.Atoi(cc.Port); err != nil {
		return nil, fmt.Errorf("bad port %q in %s", cc.Port, path)
	}
	return out, nil
}
