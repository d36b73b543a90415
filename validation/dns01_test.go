package validation

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// txtValue is what a subscriber publishes for testKeyAuth.
func txtValue() string {
	sum := sha256.Sum256([]byte(testKeyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestDNS01Success(t *testing.T) {
	d := startDNS(t)
	d.add(t,
		`_acme-challenge.example.test. TXT "some-other-value"`,
		fmt.Sprintf(`_acme-challenge.example.test. TXT "%s"`, txtValue()))
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01Wildcard(t *testing.T) {
	d := startDNS(t)
	d.add(t, fmt.Sprintf(`_acme-challenge.example.test. TXT "%s"`, txtValue()))
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("*.example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01SplitStringsAreJoined(t *testing.T) {
	d := startDNS(t)
	val := txtValue()
	d.add(t, fmt.Sprintf(`_acme-challenge.example.test. TXT "%s" "%s"`, val[:10], val[10:]))
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01WrongValue(t *testing.T) {
	d := startDNS(t)
	d.add(t, `_acme-challenge.example.test. TXT "stale-value-from-last-month"`)
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, `Incorrect TXT record "stale-value-from-last-month" found at _acme-challenge.example.test`)
}

func TestDNS01ManyWrongValuesAreSummarized(t *testing.T) {
	d := startDNS(t)
	for i := range 10 {
		d.add(t, fmt.Sprintf(`_acme-challenge.example.test. TXT "wrong-%d-%s"`, i, strings.Repeat("x", 200)))
	}
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	p := wantProblem(t, err, ProblemIncorrectResponse, "and 7 more")
	if len(p.Detail) > 600 {
		t.Errorf("detail is %d bytes; hostile records must not inflate it", len(p.Detail))
	}
}

func TestDNS01NXDOMAIN(t *testing.T) {
	v := newTestValidator(t, startDNS(t), nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemUnauthorized, "No TXT record found at _acme-challenge.example.test", "NXDOMAIN")
}

func TestDNS01NoTXTRecord(t *testing.T) {
	d := startDNS(t)
	d.add(t, "_acme-challenge.example.test. A 192.0.2.1")
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemUnauthorized, "No TXT record found at _acme-challenge.example.test")
}

func TestDNS01CNAMEFollowed(t *testing.T) {
	d := startDNS(t)
	d.add(t,
		"_acme-challenge.example.test. CNAME example.test.acme-delegation.test.",
		"example.test.acme-delegation.test. CNAME final.acme-delegation.test.",
		fmt.Sprintf(`final.acme-delegation.test. TXT "%s"`, txtValue()),
		// Not on the chain: must be ignored even if a server offers it.
		`unrelated.test. TXT "noise"`)
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01CNAMEChainInOneAnswer(t *testing.T) {
	// A resolver that chases the CNAME itself sends the whole chain at once.
	d := startDNS(t)
	d.setAnswer(t, "_acme-challenge.example.test", dns.TypeTXT,
		"_acme-challenge.example.test. CNAME target.test.",
		fmt.Sprintf(`target.test. TXT "%s"`, txtValue()))
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01RecordsOffTheChainAreIgnored(t *testing.T) {
	// An answer carrying the right value at a name that is not on the CNAME
	// chain (an injection attempt) must not validate.
	d := startDNS(t)
	d.setAnswer(t, "_acme-challenge.example.test", dns.TypeTXT,
		"_acme-challenge.example.test. CNAME target.test.",
		fmt.Sprintf(`evil.test. TXT "%s"`, txtValue()),
		`target.test. TXT "right-chain-wrong-value"`)
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, `"right-chain-wrong-value"`)
}

func TestDNS01CNAMELoop(t *testing.T) {
	d := startDNS(t)
	d.add(t,
		"_acme-challenge.example.test. CNAME a.loop.test.",
		"a.loop.test. CNAME b.loop.test.",
		"b.loop.test. CNAME _acme-challenge.example.test.")
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "CNAME chain too long or looping looking up TXT for _acme-challenge.example.test")
}

func TestDNS01CNAMEChainTooLong(t *testing.T) {
	d := startDNS(t)
	d.add(t, "_acme-challenge.example.test. CNAME c0.chain.test.")
	for i := range 20 {
		d.add(t, fmt.Sprintf("c%d.chain.test. CNAME c%d.chain.test.", i, i+1))
	}
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "CNAME chain too long")
	if q := d.queries.Load(); q > maxCNAMEs+2 {
		t.Errorf("%d queries for one lookup; the chain must be bounded", q)
	}
}

func TestDNS01ResolverDown(t *testing.T) {
	closed := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	v := newTestValidator(t, startDNS(t), func(c *Config) { c.Resolvers = []string{closed} })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	p := wantProblem(t, err, ProblemDNS, "DNS problem", "looking up TXT for _acme-challenge.example.test")
	if strings.Contains(p.Detail, closed) {
		t.Errorf("detail %q names the CA's resolver", p.Detail)
	}
}

func TestDNS01SecondResolverAnswersWhenFirstIsDown(t *testing.T) {
	d := startDNS(t)
	d.add(t, fmt.Sprintf(`_acme-challenge.example.test. TXT "%s"`, txtValue()))
	closed := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	v := newTestValidator(t, d, func(c *Config) { c.Resolvers = []string{closed, d.addr} })
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01ServFail(t *testing.T) {
	d := startDNS(t)
	d.setRcode("_acme-challenge.example.test", dns.RcodeServerFailure)
	v := newTestValidator(t, d, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "SERVFAIL looking up TXT for _acme-challenge.example.test")
}

func TestDNS01TruncatedAnswerRetriedOverTCP(t *testing.T) {
	d := startDNS(t)
	d.add(t, fmt.Sprintf(`_acme-challenge.example.test. TXT "%s"`, txtValue()))
	d.setTruncate("_acme-challenge.example.test")
	v := newTestValidator(t, d, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeDNS01, testToken, testKeyAuth))
}

func TestDNS01IPIdentifierIsMalformed(t *testing.T) {
	v := newTestValidator(t, startDNS(t), nil)
	err := v.Validate(bg, ipIdent("127.0.0.1"), ChallengeDNS01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemMalformed, "dns-01 cannot validate an IP address")
}
