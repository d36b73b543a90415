package issuance

import (
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Names is a set of certificate names in canonical form: DNS names in lower
// case, IPv4 addresses in their 4-byte form (an IPv4-mapped IPv6 address is
// the IPv4 address), each list sorted and without repeats. It is Anvil's one
// comparison of names: a CSR against its order (acme's preflight), a CSR
// against the names an issuance request authorises (CheckedCSR.SameNames), and
// a certificate against the request it answers (the signer and its client).
type Names struct {
	DNS []string
	IPs []net.IP
}

// NamesOf returns the canonical set of the given names. It refuses nothing:
// an address that is not 4 or 16 bytes is kept as it is, and so equals no
// well-formed one.
func NamesOf(dnsNames []string, ips []net.IP) Names {
	var n Names
	for _, d := range dnsNames {
		n.DNS = append(n.DNS, strings.ToLower(d))
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ip = net.IP(a.Unmap().AsSlice())
		}
		n.IPs = append(n.IPs, ip)
	}
	slices.Sort(n.DNS)
	n.DNS = slices.Compact(n.DNS)
	sortIPs(n.IPs)
	n.IPs = slices.CompactFunc(n.IPs, net.IP.Equal)
	return n
}

// Equal says whether two canonical sets hold the same names.
func (n Names) Equal(o Names) bool {
	return slices.Equal(n.DNS, o.DNS) && slices.EqualFunc(n.IPs, o.IPs, net.IP.Equal)
}

// String lists the names, DNS names first: "[a.example, 192.0.2.1]", or
// "no names".
func (n Names) String() string {
	all := slices.Clone(n.DNS)
	for _, ip := range n.IPs {
		all = append(all, ip.String())
	}
	if len(all) == 0 {
		return "no names"
	}
	return "[" + strings.Join(all, ", ") + "]"
}
