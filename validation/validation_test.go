package validation

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/config"
)

func TestConfigFromYAML(t *testing.T) {
	var c Config
	err := config.Decode([]byte(`
resolvers: ["127.0.0.1:5353", "::1"]
http_port: 5002
tls_port: 5001
timeout: 30s
dns_timeout: 2s
connect_timeout: 3s
max_redirects: 4
max_body_bytes: 4096
user_agent: anvil-test
caa_identities: [anvil.example]
allow_private_targets: true
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.resolver.servers; len(got) != 2 || got[0] != "127.0.0.1:5353" || got[1] != "[::1]:53" {
		t.Errorf("resolvers %v", got)
	}
	if v.cfg.Timeout.Duration != 30*time.Second || v.cfg.MaxRedirects != 4 || v.cfg.HTTPPort != 5002 {
		t.Errorf("config not applied: %+v", v.cfg)
	}
}

func TestConfigRejected(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"resolvers: [dns.example]\ncaa_identities: [a.example]", "resolvers[0]"},
		{"resolvers: [\"127.0.0.1:0\"]\ncaa_identities: [a.example]", "resolvers[0]"},
		{"http_port: 70000\ncaa_identities: [a.example]", "http_port"},
		{"max_redirects: -2\ncaa_identities: [a.example]", "max_redirects"},
		{"max_body_bytes: 100000000\ncaa_identities: [a.example]", "max_body_bytes"},
		{"resolvers: [\"127.0.0.1\"]", "caa_identities: is required"},
		{"caa_identities: [\"not a name\"]", "caa_identities[0]"},
		{"caa_identity: [a.example]", `unknown key "caa_identity"`},
	} {
		var c Config
		err := config.Decode([]byte(tc.yaml), &c)
		if err == nil {
			_, err = New(c)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error about %s", tc.yaml, err, tc.want)
		}
	}
	if _, err := New(Config{CAAIdentities: []string{"a.example"}, UserAgent: "x\r\nEvil: 1"}); err == nil {
		t.Error("a user agent with a line break was accepted")
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := resolvConfPath
	resolvConfPath = conf
	t.Cleanup(func() { resolvConfPath = old })
	v, err := New(Config{CAAIdentities: []string{" Anvil.Example "}})
	if err != nil {
		t.Fatal(err)
	}
	c := v.cfg
	if c.HTTPPort != 80 || c.TLSPort != 443 || c.MaxRedirects != 10 || c.MaxBodyBytes != 8192 ||
		c.Timeout.Duration != DefaultTimeout || c.UserAgent == "" || c.AllowPrivateTargets || c.DisableCAA {
		t.Errorf("defaults: %+v", c)
	}
	if c.CAAIdentities[0] != "anvil.example" {
		t.Errorf("CAA identity not normalised: %q", c.CAAIdentities[0])
	}
	if got := v.resolver.servers; len(got) != 2 || got[0] != "192.0.2.53:53" || got[1] != "[2001:db8::53]:53" {
		t.Errorf("system resolvers %v", got)
	}
	resolvConfPath = filepath.Join(dir, "missing")
	if _, err := New(Config{CAAIdentities: []string{"anvil.example"}}); err == nil {
		t.Error("New without resolvers and without resolv.conf succeeded")
	}
}

func TestValidateRefusesBadInput(t *testing.T) {
	v := newTestValidator(t, startDNS(t), nil)
	for _, tc := range []struct {
		name             string
		ident            Identifier
		typ, token, auth string
		problem, phrase  string
	}{
		{"unknown challenge", dnsIdent("example.test"), "http-02", testToken, testKeyAuth, ProblemMalformed, "unsupported challenge type"},
		{"unknown identifier type", Identifier{"email", "a@example.test"}, ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "unsupported identifier type"},
		{"bad name", dnsIdent("exa mple.test"), ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "not a valid DNS name"},
		{"IP as a dns identifier", dnsIdent("127.0.0.1"), ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "not a valid DNS name"},
		{"bad IP", ipIdent("300.1.2.3"), ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "not a valid IP address"},
		{"scoped IP", ipIdent("fe80::1%eth0"), ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "not a valid IP address"},
		{"wildcard over http-01", dnsIdent("*.example.test"), ChallengeHTTP01, testToken, testKeyAuth, ProblemMalformed, "use dns-01"},
		{"token with a slash", dnsIdent("example.test"), ChallengeHTTP01, "../../etc", "../../etc.x", ProblemServerInternal, "token is malformed"},
		{"key authorization for another token", dnsIdent("example.test"), ChallengeHTTP01, testToken, "other.thumb", ProblemServerInternal, "key authorization is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, v.Validate(bg, tc.ident, tc.typ, tc.token, tc.auth), tc.problem, tc.phrase)
		})
	}
}

func TestAddrPolicy(t *testing.T) {
	strict := &Validator{cfg: Config{}}
	lax := &Validator{cfg: Config{AllowPrivateTargets: true}}
	for _, tc := range []struct {
		addr          string
		strict, inLax string // "" = allowed
	}{
		{"203.0.114.7", "", ""},
		{"2606:4700::1111", "", ""},
		{"127.0.0.1", "loopback", ""},
		{"::1", "loopback", ""},
		{"::ffff:127.0.0.1", "loopback", ""},
		{"10.1.2.3", "private", ""},
		{"172.31.255.255", "private", ""},
		{"192.168.0.1", "private", ""},
		{"fd00::1", "private", ""},
		{"169.254.169.254", "link-local", ""},
		{"fe80::1", "link-local", ""},
		{"100.64.0.1", "shared (carrier-grade NAT)", ""},
		{"192.0.2.1", "documentation", ""},
		{"2001:db8::1", "documentation", ""},
		{"240.0.0.1", "reserved", ""},
		{"0.0.0.0", "unspecified", "unspecified"},
		{"::", "unspecified", "unspecified"},
		{"::ffff:0.0.0.0", "unspecified", "unspecified"},
		{"255.255.255.255", "broadcast", "broadcast"},
		{"224.0.0.1", "multicast", "multicast"},
		{"ff02::1", "multicast", "multicast"},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := strict.addrRefusal(a); got != tc.strict {
			t.Errorf("strict policy on %s: %q, want %q", a, got, tc.strict)
		}
		if got := lax.addrRefusal(a); got != tc.inLax {
			t.Errorf("private-allowed policy on %s: %q, want %q", a, got, tc.inLax)
		}
	}
}

func TestUsableAddrsPrefersIPv6AndKeepsOneOfEach(t *testing.T) {
	v := &Validator{cfg: Config{}}
	var in []netip.Addr
	for _, s := range []string{"10.0.0.1", "203.0.114.1", "203.0.114.2", "fd00::1", "2606:4700::1", "2606:4700::2"} {
		in = append(in, netip.MustParseAddr(s))
	}
	got, prob := v.usableAddrs("example.test", in)
	if prob != nil {
		t.Fatal(prob)
	}
	if fmt.Sprint(got) != "[2606:4700::1 203.0.114.1]" {
		t.Errorf("got %v, want the first public IPv6 then the first public IPv4", got)
	}
}

func TestConcurrentValidations(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1", fmt.Sprintf(`_acme-challenge.example.test. TXT "%s"`, txtValue()), `example.test. CAA 0 issue "anvil.example"`)
	s := startHTTP(t, false, serveKeyAuth(testKeyAuth))
	v := newTestValidator(t, d, func(c *Config) { c.HTTPPort = s.port })
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for range 20 {
		wg.Add(3)
		go func() {
			defer wg.Done()
			errs <- v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
		}()
		go func() {
			defer wg.Done()
			errs <- v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
		}()
		go func() { defer wg.Done(); errs <- v.CheckCAA(bg, "example.test", false, testAccount, ChallengeDNS01) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		wantOK(t, err)
	}
}

func TestProblemKeepsCauseOutOfError(t *testing.T) {
	p := newProblem(ProblemConnection, fmt.Errorf("dial tcp 10.9.8.7:80: secret internal detail"), "Fetching %s: connection refused", "http://example.test/")
	if strings.Contains(p.Error(), "secret") {
		t.Errorf("Error() %q includes the internal cause", p.Error())
	}
	if !strings.Contains(p.LogValue().String(), "secret internal detail") {
		t.Errorf("LogValue %q lacks the cause", p.LogValue())
	}
}

func TestConnectRechecksPolicy(t *testing.T) {
	v := &Validator{cfg: Config{}.withDefaults()}
	_, _, ce := v.connect(bg, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, 80)
	if ce == nil || !strings.Contains(ce.detail(), "address policy") {
		t.Fatalf("connect to loopback with private targets refused: %v", ce)
	}
}
