package policy

import (
	"errors"
	"net"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

func TestRules(t *testing.T) {
	no := false
	r, err := New(Config{
		AllowedSuffixes: []string{"example.com", "test"},
		DeniedNames:     []string{"secret.example.com"},
		AllowedIPRanges: []string{"10.0.0.0/8", "2001:db8::/32"},
		AllowSpecialUse: []string{"example.com", "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, wantWildcard := range map[string]bool{"example.com": false, "WWW.Example.com": false, "*.example.com": true, "a.b.test": false} {
		_, wc, err := r.CheckDNSName(name)
		if err != nil || wc != wantWildcard {
			t.Errorf("%s: wildcard=%v err=%v", name, wc, err)
		}
	}
	for _, name := range []string{"test", "example.org", "notexample.com", "secret.example.com", "a.secret.example.com", "*.secret.example.com", "a..example.com"} {
		if _, _, err := r.CheckDNSName(name); !errors.Is(err, issuance.ErrRejectedName) {
			t.Errorf("%s accepted: %v", name, err)
		}
	}
	for _, ip := range []string{"10.1.2.3", "2001:db8::1"} {
		if got, err := r.CheckIP(ip); err != nil || got != ip {
			t.Errorf("%s: %q %v", ip, got, err)
		}
	}
	for _, ip := range []string{"192.168.1.1", "2001:DB8::1", "010.1.2.3", "fe80::1%eth0", "nonsense", "::ffff:10.1.2.3"} {
		if _, err := r.CheckIP(ip); !errors.Is(err, issuance.ErrRejectedName) {
			t.Errorf("%s accepted: %v", ip, err)
		}
	}
	if err := r.CheckNames([]string{"a.example.com"}, []net.IP{net.ParseIP("10.0.0.1")}); err != nil {
		t.Error(err)
	}
	if err := r.CheckNames([]string{"a.example.org"}, nil); err == nil {
		t.Error("signer policy accepted a name outside the suffixes")
	}
	nw, _ := New(Config{AllowWildcards: &no})
	if _, _, err := nw.CheckDNSName("*.example.com"); err == nil {
		t.Error("wildcard accepted with wildcards off")
	}
	if _, err := nw.CheckIP("10.0.0.1"); err == nil {
		t.Error("IP accepted with no ranges")
	}
	if _, _, err := nw.CheckDNSName("localhost"); err == nil {
		t.Error("single-label name accepted by default")
	}
	single, _ := New(Config{AllowSingleLabel: true, AllowSpecialUse: []string{"localhost"}})
	if _, _, err := single.CheckDNSName("localhost"); err != nil {
		t.Errorf("single-label name refused with allow_single_label: %v", err)
	}
	if _, err := New(Config{AllowedIPRanges: []string{"10.0.0.0/33"}}); err == nil {
		t.Error("bad CIDR accepted")
	}
}
