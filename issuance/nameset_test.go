package issuance_test

import (
	"net"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

// The one comparison of names: case, order, repeats and the IPv4-mapped form
// of an address make no difference; one name more or less does.
func TestNamesEqual(t *testing.T) {
	v4 := net.ParseIP("192.0.2.1") // 16-byte, IPv4-mapped
	for _, tc := range []struct {
		name       string
		aDNS, bDNS []string
		aIPs, bIPs []net.IP
		same       bool
		describeA  string
	}{
		{"case and order", []string{"B.example", "a.example"}, []string{"a.example", "b.EXAMPLE"}, nil, nil, true, "[a.example, b.example]"},
		{"repeats", []string{"a.example", "A.example"}, []string{"a.example"}, nil, nil, true, "[a.example]"},
		{"mapped address", nil, nil, []net.IP{v4}, []net.IP{v4.To4()}, true, "[192.0.2.1]"},
		{"one more name", []string{"a.example", "b.example"}, []string{"a.example"}, nil, nil, false, "[a.example, b.example]"},
		{"name for address", []string{"192.0.2.1"}, nil, nil, []net.IP{v4}, false, "[192.0.2.1]"},
		{"other address", nil, nil, []net.IP{net.ParseIP("2001:db8::1")}, []net.IP{net.ParseIP("2001:db8::2")}, false, "[2001:db8::1]"},
		{"malformed address", nil, nil, []net.IP{{192, 0, 2}}, []net.IP{v4}, false, "[?c00002]"},
		{"none", nil, nil, nil, nil, true, "no names"},
	} {
		a, b := issuance.NamesOf(tc.aDNS, tc.aIPs), issuance.NamesOf(tc.bDNS, tc.bIPs)
		if a.Equal(b) != tc.same || b.Equal(a) != tc.same {
			t.Errorf("%s: %s equal to %s is %v, want %v", tc.name, a, b, a.Equal(b), tc.same)
		}
		if a.String() != tc.describeA {
			t.Errorf("%s: described as %q, want %q", tc.name, a.String(), tc.describeA)
		}
	}
}
