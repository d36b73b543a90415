package validation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxCNAMEs bounds how many CNAMEs one lookup follows, across answers and
	// queries, so a loop or an absurd chain ends.
	maxCNAMEs = 8
	// ednsSize is the UDP payload size we advertise (the DNS flag day 2020
	// value): large enough for most TXT and CAA sets, small enough not to
	// fragment. Larger answers come back truncated and are re-asked over TCP.
	ednsSize = 1232
)

// resolver asks the configured recursive resolvers, and nothing else, with
// github.com/miekg/dns.
type resolver struct {
	servers []string // "IP:port"
	timeout time.Duration
}

// dnsAnswer is the outcome of a lookup that got an authoritative-enough
// answer: the records of the asked type at the end of the CNAME chain, or none.
type dnsAnswer struct {
	name     string   // where the chain ended (FQDN)
	rrs      []dns.RR // records of the asked type at name
	nxdomain bool     // name does not exist
}

// dnsError is a lookup that got no usable answer: a resolver failure
// (SERVFAIL, REFUSED...), a network error or timeout, or a CNAME loop.
type dnsError struct {
	name  string // FQDN being looked up
	qtype uint16
	rcode int // the resolver's rcode, or -1 when there was no answer
	err   error
}

var errCNAMEChain = errors.New("CNAME chain too long or looping")

func (e *dnsError) Error() string {
	what := fmt.Sprintf("%s %s", dns.TypeToString[e.qtype], e.name)
	if e.rcode >= 0 {
		return fmt.Sprintf("dns lookup of %s: %s", what, dns.RcodeToString[e.rcode])
	}
	return fmt.Sprintf("dns lookup of %s: %v", what, e.err)
}

func (e *dnsError) Unwrap() error { return e.err }

// detail says what went wrong in words fit for the subscriber: the rcode or
// the kind of failure, never the resolver's address or a Go error.
func (e *dnsError) detail() string {
	what := fmt.Sprintf("%s for %s", dns.TypeToString[e.qtype], strings.TrimSuffix(e.name, "."))
	switch {
	case e.rcode >= 0:
		return fmt.Sprintf("DNS problem: %s looking up %s - the domain's nameservers may be malfunctioning", dns.RcodeToString[e.rcode], what)
	case errors.Is(e.err, errCNAMEChain):
		return fmt.Sprintf("DNS problem: CNAME chain too long or looping looking up %s", what)
	case isTimeout(e.err):
		return fmt.Sprintf("DNS problem: query timed out looking up %s", what)
	default:
		return fmt.Sprintf("DNS problem: networking error looking up %s", what)
	}
}

// lookup finds the records of type qtype at name, following CNAMEs both inside
// an answer and, when the resolver did not, with further queries. Only records
// whose owner is on the chain count: anything else in an answer is ignored.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16) (*dnsAnswer, error) {
	qname := dns.CanonicalName(name)
	orig := qname
	seen := map[string]bool{qname: true}
	cnames := 0
	for {
		msg, err := r.exchange(ctx, qname, qtype)
		if err != nil {
			return nil, err
		}
		cur := qname
		for {
			if rrs := ownedBy(msg.Answer, cur, qtype); len(rrs) > 0 {
				return &dnsAnswer{name: cur, rrs: rrs}, nil
			}
			cn := ownedBy(msg.Answer, cur, dns.TypeCNAME)
			if len(cn) == 0 || qtype == dns.TypeCNAME {
				break
			}
			next := dns.CanonicalName(cn[0].(*dns.CNAME).Target)
			cnames++
			if cnames > maxCNAMEs || seen[next] {
				return nil, &dnsError{name: orig, qtype: qtype, rcode: -1, err: errCNAMEChain}
			}
			seen[next] = true
			cur = next
		}
		// The rcode describes the last name of the chain in the answer.
		if msg.Rcode == dns.RcodeNameError {
			return &dnsAnswer{name: cur, nxdomain: true}, nil
		}
		if cur == qname {
			return &dnsAnswer{name: cur}, nil
		}
		// The chain ends at a name the answer says nothing more about: either
		// it has no such records, or the resolver did not chase the CNAME.
		// Asking costs one query and settles it.
		qname = cur
	}
}

// ownedBy returns the records of rrs of type t owned by name (compared
// case-insensitively, as DNS names are).
func ownedBy(rrs []dns.RR, name string, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == t && h.Class == dns.ClassINET && strings.EqualFold(h.Name, name) {
			out = append(out, rr)
		}
	}
	return out
}

// exchange asks each resolver in turn until one gives a NOERROR or NXDOMAIN
// answer to exactly this question, retrying over TCP when UDP was truncated.
func (r *resolver) exchange(ctx context.Context, qname string, qtype uint16) (*dns.Msg, error) {
	var last error
	for _, server := range r.servers {
		if ctx.Err() != nil {
			break
		}
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		m.RecursionDesired = true
		m.SetEdns0(ednsSize, false)
		resp, err := r.exchangeOne(ctx, server, m, "udp")
		if err == nil && resp.Truncated {
			resp, err = r.exchangeOne(ctx, server, m, "tcp")
		}
		switch {
		case err != nil:
			last = &dnsError{name: qname, qtype: qtype, rcode: -1, err: fmt.Errorf("resolver %s: %w", server, err)}
		case !answers(resp, qname, qtype):
			last = &dnsError{name: qname, qtype: qtype, rcode: -1, err: fmt.Errorf("resolver %s answered another question", server)}
		case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
			return resp, nil
		default:
			last = &dnsError{name: qname, qtype: qtype, rcode: resp.Rcode, err: fmt.Errorf("resolver %s", server)}
		}
	}
	if last == nil {
		last = &dnsError{name: qname, qtype: qtype, rcode: -1, err: ctx.Err()}
	}
	return nil, last
}

// answers reports whether resp is a response to the question (qname, qtype).
func answers(resp *dns.Msg, qname string, qtype uint16) bool {
	if !resp.Response || len(resp.Question) != 1 {
		return false
	}
	q := resp.Question[0]
	return q.Qtype == qtype && q.Qclass == dns.ClassINET && strings.EqualFold(q.Name, qname)
}

// exchangeOne sends m to one server within the per-query timeout. The
// connection is closed when ctx ends, so a cancelled caller does not wait
// out the read deadline.
func (r *resolver) exchangeOne(ctx context.Context, server string, m *dns.Msg, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsSize}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	m.Id = dns.Id()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
	return resp, nil
}

// lookupAddrs resolves name to its A and AAAA addresses, asking both at once.
// It fails only if neither lookup gave an answer; a failure of one family
// beside addresses of the other costs nothing but that family.
//
// Localhost names are loopback without asking anyone (RFC 6761 §6.3), so
// that a closed or development setup can validate "app.localhost" whatever
// its resolver does with them; the address policy still refuses loopback
// unless private targets are allowed.
func (r *resolver) lookupAddrs(ctx context.Context, name string) ([]netip.Addr, *Problem) {
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return []netip.Addr{netip.IPv6Loopback(), netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	var (
		wg         sync.WaitGroup
		ans4, ans6 *dnsAnswer
		err4, err6 error
	)
	wg.Add(2)
	go func() { defer wg.Done(); ans4, err4 = r.lookup(ctx, name, dns.TypeA) }()
	go func() { defer wg.Done(); ans6, err6 = r.lookup(ctx, name, dns.TypeAAAA) }()
	wg.Wait()

	var addrs []netip.Addr
	for _, ans := range []*dnsAnswer{ans6, ans4} {
		if ans == nil {
			continue
		}
		for _, rr := range ans.rrs {
			var ip []byte
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A.To4()
			case *dns.AAAA:
				ip = rr.AAAA.To16()
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	for _, err := range []error{err4, err6} {
		if err == nil {
			continue
		}
		return nil, dnsProblem(err, "")
	}
	if ans4.nxdomain || ans6.nxdomain {
		return nil, newProblem(ProblemDNS, nil, "DNS problem: NXDOMAIN looking up A for %s - check that a DNS record exists for this domain", name)
	}
	return nil, newProblem(ProblemDNS, nil, "DNS problem: no A or AAAA records found for %s", name)
}
