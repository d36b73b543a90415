package validation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

type addrRange struct {
	prefix netip.Prefix
	what   string
}

func ranges(what string, prefixes ...string) []addrRange {
	out := make([]addrRange, len(prefixes))
	for i, p := range prefixes {
		out[i] = addrRange{netip.MustParsePrefix(p), what}
	}
	return out
}

// neverTargets are addresses no validation ever connects to, private network
// or not: they do not name one host (or name this one, for 0.0.0.0 and ::).
var neverTargets = concat(
	ranges("unspecified", "0.0.0.0/8", "::/128"),
	ranges("broadcast", "255.255.255.255/32"),
	ranges("multicast", "224.0.0.0/4", "ff00::/8"),
)

// privateTargets are the IANA special-purpose ranges that are not globally
// reachable (RFC 6890 and its registries). A public CA must not connect to
// them: a subscriber could point it at the CA's own network. They are allowed
// only with Config.AllowPrivateTargets.
var privateTargets = concat(
	ranges("loopback", "127.0.0.0/8", "::1/128"),
	ranges("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
	ranges("link-local", "169.254.0.0/16", "fe80::/10"),
	ranges("shared (carrier-grade NAT)", "100.64.0.0/10"),
	ranges("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
	ranges("reserved", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "240.0.0.0/4",
		"::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2002::/16", "5f00::/16"),
)

func concat(lists ...[]addrRange) []addrRange {
	var out []addrRange
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// addrRefusal says why validation must not connect to a, or "" if it may.
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they reach.
func (v *Validator) addrRefusal(a netip.Addr) string {
	a = a.Unmap()
	if !a.IsValid() {
		return "invalid"
	}
	if a.Zone() != "" {
		return "scoped"
	}
	for _, r := range neverTargets {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	if v.cfg.AllowPrivateTargets {
		return ""
	}
	for _, r := range privateTargets {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	return ""
}

// usableAddrs keeps the addresses policy allows and picks at most two to try:
// the first IPv6 address, then the first IPv4 address as a fallback, as a
// dual-stack client would. If none is allowed the problem names what the
// name resolved to.
func (v *Validator) usableAddrs(name string, addrs []netip.Addr) ([]netip.Addr, *Problem) {
	var v6, v4 netip.Addr
	var refused []string
	for _, a := range addrs {
		if why := v.addrRefusal(a); why != "" {
			refused = append(refused, fmt.Sprintf("%s (%s)", a, why))
			continue
		}
		a = a.Unmap()
		if a.Is6() && !v6.IsValid() {
			v6 = a
		}
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
	}
	var out []netip.Addr
	for _, a := range []netip.Addr{v6, v4} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		if len(refused) > 3 {
			refused = append(refused[:3], "…")
		}
		return nil, newProblem(ProblemDNS, nil, "DNS problem: %s resolves only to addresses this CA does not connect to: %s", name, strings.Join(refused, ", "))
	}
	return out, nil
}

// errRefusedAddr marks an address the policy refused at connect time.
var errRefusedAddr = errors.New("address refused by policy")

// dialFailure is one address that could not be connected to.
type dialFailure struct {
	addr netip.AddrPort
	err  error
}

// connectError is every failed attempt of one connect.
type connectError struct{ attempts []dialFailure }

func (e *connectError) Error() string {
	parts := make([]string, len(e.attempts))
	for i, a := range e.attempts {
		parts[i] = fmt.Sprintf("%s: %v", a.addr, a.err)
	}
	return "connect: " + strings.Join(parts, "; ")
}

func (e *connectError) Unwrap() []error {
	errs := make([]error, len(e.attempts))
	for i, a := range e.attempts {
		errs[i] = a.err
	}
	return errs
}

// detail says, per address tried, what happened, in the subscriber's terms.
func (e *connectError) detail() string {
	if len(e.attempts) == 0 {
		return "no address to connect to"
	}
	parts := make([]string, len(e.attempts))
	for i, a := range e.attempts {
		if isTimeout(a.err) {
			parts[i] = fmt.Sprintf("timeout during connect to %s (likely a firewall problem)", a.addr)
		} else {
			parts[i] = fmt.Sprintf("%s by %s", netErrText(a.err), a.addr)
		}
	}
	return strings.Join(parts, "; ")
}

// connect opens a TCP connection to the first of addrs (as chosen by
// usableAddrs) that accepts one on port. Each attempt has its own
// ConnectTimeout so that a silent IPv6 address leaves time for IPv4.
func (v *Validator) connect(ctx context.Context, addrs []netip.Addr, port int) (net.Conn, netip.AddrPort, *connectError) {
	ce := &connectError{}
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(port))
		// Callers pass only addresses already checked; checking again here
		// keeps any future path from reaching a refused address.
		if why := v.addrRefusal(a); why != "" {
			ce.attempts = append(ce.attempts, dialFailure{ap, fmt.Errorf("%w: %s", errRefusedAddr, why)})
			continue
		}
		if ctx.Err() != nil {
			ce.attempts = append(ce.attempts, dialFailure{ap, ctx.Err()})
			break
		}
		noteContacted(ctx, ap)
		d := net.Dialer{Timeout: v.cfg.ConnectTimeout.Duration}
		conn, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return conn, ap, nil
		}
		ce.attempts = append(ce.attempts, dialFailure{ap, err})
	}
	return nil, netip.AddrPort{}, ce
}

// isTimeout reports whether err is a deadline: ours, the context's or a
// socket's.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// netErrText names a network failure the way a subscriber's tools would,
// without Go's error text.
func netErrText(err error) string {
	switch {
	case errors.Is(err, errRefusedAddr):
		return "refused by this CA's address policy"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, context.Canceled):
		return "validation cancelled"
	case isTimeout(err):
		return "timeout"
	default:
		return "connection failed"
	}
}

// tlsErrText describes a TLS failure if err is one: an alert the server sent,
// a non-TLS answer, or the crypto/tls description of what was wrong with the
// handshake (which speaks of the protocol, not of our internals).
func tlsErrText(err error) (string, bool) {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return "the server did not answer with TLS", true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		return "the server sent the TLS alert " + quote(strings.TrimPrefix(oe.Err.Error(), "tls: "), 64), true
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return "TLS alert " + quote(ae.Error(), 64), true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if msg := e.Error(); strings.HasPrefix(msg, "tls: ") {
			return quote(msg, 120), true
		}
	}
	return "", false
}
