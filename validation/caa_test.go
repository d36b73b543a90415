package validation

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const (
	testAccount = "https://acme.anvil.example/acme/acct/42"
	otherAcct   = "https://acme.anvil.example/acme/acct/7"
)

// caaSetup serves the given CAA records (zone-file lines) and returns a
// Validator whose CA identity is anvil.example.
func caaSetup(t *testing.T, lines ...string) (*Validator, *testDNS) {
	t.Helper()
	d := startDNS(t)
	d.add(t, lines...)
	return newTestValidator(t, d, nil), d
}

func TestCAAAllowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []string
		check   string
		wild    bool
		method  string
	}{
		{"issue for us", []string{`example.test. CAA 0 issue "anvil.example"`}, "example.test", false, ChallengeHTTP01},
		{"one of several CAs", []string{`example.test. CAA 0 issue "other-ca.example"`, `example.test. CAA 0 issue "anvil.example"`}, "example.test", false, ChallengeHTTP01},
		{"issuer case-insensitive", []string{`example.test. CAA 0 issue "ANVIL.Example"`}, "example.test", false, ChallengeHTTP01},
		{"tag case-insensitive", []string{`example.test. CAA 0 ISSUE "anvil.example"`}, "example.test", false, ChallengeHTTP01},
		{"whitespace around issuer", []string{`example.test. CAA 0 issue "  anvil.example ; "`}, "example.test", false, ChallengeHTTP01},
		{"wildcard falls back to issue", []string{`example.test. CAA 0 issue "anvil.example"`}, "example.test", true, ChallengeDNS01},
		{"issuewild for us", []string{`example.test. CAA 0 issue "other-ca.example"`, `example.test. CAA 0 issuewild "anvil.example"`}, "example.test", true, ChallengeDNS01},
		{"issuewild does not govern non-wildcards", []string{`example.test. CAA 0 issue "anvil.example"`, `example.test. CAA 0 issuewild ";"`}, "example.test", false, ChallengeDNS01},
		{"wildcard given as *.", []string{`example.test. CAA 0 issue "other-ca.example"`, `example.test. CAA 0 issuewild "anvil.example"`}, "*.example.test", false, ChallengeDNS01},
		{"accounturi match", []string{`example.test. CAA 0 issue "anvil.example; accounturi=` + testAccount + `"`}, "example.test", false, ChallengeHTTP01},
		{"validationmethods include the method", []string{`example.test. CAA 0 issue "anvil.example; validationmethods=dns-01,http-01"`}, "example.test", false, ChallengeHTTP01},
		{"both parameters match", []string{`example.test. CAA 0 issue "anvil.example; accounturi=` + testAccount + `; validationmethods=tls-alpn-01"`}, "example.test", false, ChallengeTLSALPN01},
		{"unknown parameter ignored", []string{`example.test. CAA 0 issue "anvil.example; policy=ev"`}, "example.test", false, ChallengeHTTP01},
		{"unknown non-critical tag ignored", []string{`example.test. CAA 0 tbs "unknown"`, `example.test. CAA 0 issue "anvil.example"`}, "example.test", false, ChallengeHTTP01},
		{"only iodef", []string{`example.test. CAA 0 iodef "mailto:security@example.test"`}, "example.test", false, ChallengeHTTP01},
		{"only issuewild, non-wildcard", []string{`example.test. CAA 0 issuewild ";"`}, "example.test", false, ChallengeHTTP01},
		{"tree climbing to the parent", []string{`example.test. CAA 0 issue "anvil.example"`}, "www.sub.example.test", false, ChallengeHTTP01},
		{"no CAA anywhere", nil, "www.example.test", false, ChallengeHTTP01},
		{"IP addresses have no CAA", nil, "192.0.2.1", false, ChallengeHTTP01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := caaSetup(t, tc.records...)
			wantOK(t, v.CheckCAA(bg, tc.check, tc.wild, testAccount, tc.method))
		})
	}
}

func TestCAAForbidden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []string
		check   string
		wild    bool
		method  string
		phrase  string
	}{
		{"other CA", []string{`example.test. CAA 0 issue "other-ca.example"`}, "example.test", false, ChallengeHTTP01, `"issue" records do not name this CA`},
		{"nobody may issue", []string{`example.test. CAA 0 issue ";"`}, "example.test", false, ChallengeHTTP01, "do not name this CA"},
		{"issuewild forbids a wildcard", []string{`example.test. CAA 0 issue "anvil.example"`, `example.test. CAA 0 issuewild "other-ca.example"`}, "example.test", true, ChallengeDNS01, `"issuewild" records do not name this CA`},
		{"issue forbids a wildcard without issuewild", []string{`example.test. CAA 0 issue "other-ca.example"`}, "*.example.test", false, ChallengeDNS01, `"issue" records`},
		{"accounturi mismatch", []string{`example.test. CAA 0 issue "anvil.example; accounturi=` + otherAcct + `"`}, "example.test", false, ChallengeHTTP01, "accounturi"},
		{"accounturi parameter case", []string{`example.test. CAA 0 issue "anvil.example; AccountURI=` + otherAcct + `"`}, "example.test", false, ChallengeHTTP01, "accounturi"},
		{"accounturi repeated", []string{`example.test. CAA 0 issue "anvil.example; accounturi=` + testAccount + `; accounturi=` + otherAcct + `"`}, "example.test", false, ChallengeHTTP01, "repeats a parameter"},
		{"validationmethods exclude the method", []string{`example.test. CAA 0 issue "anvil.example; validationmethods=dns-01"`}, "example.test", false, ChallengeHTTP01, `do not include "http-01"`},
		{"validationmethods malformed", []string{`example.test. CAA 0 issue "anvil.example; validationmethods=http-01,,dns-01"`}, "example.test", false, ChallengeHTTP01, "malformed"},
		{"unknown critical tag", []string{`example.test. CAA 128 tbs "unknown"`, `example.test. CAA 0 issue "anvil.example"`}, "example.test", false, ChallengeHTTP01, `unknown critical property "tbs"`},
		{"malformed value", []string{`example.test. CAA 0 issue "anvil.example; accounturi"`}, "example.test", false, ChallengeHTTP01, "prevents issuance"},
		{"issuer with a trailing dot is not ours", []string{`example.test. CAA 0 issue "anvil.example."`}, "example.test", false, ChallengeHTTP01, "prevents issuance"},
		{"tree climbing finds the parent", []string{`example.test. CAA 0 issue "other-ca.example"`}, "www.sub.example.test", false, ChallengeHTTP01, "CAA record for example.test prevents issuance for www.sub.example.test"},
		{"closest set wins over the parent", []string{`example.test. CAA 0 issue "anvil.example"`, `sub.example.test. CAA 0 issue "other-ca.example"`}, "www.sub.example.test", false, ChallengeHTTP01, "CAA record for sub.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := caaSetup(t, tc.records...)
			err := v.CheckCAA(bg, tc.check, tc.wild, testAccount, tc.method)
			wantProblem(t, err, ProblemCAA, tc.phrase)
		})
	}
}

func TestCAAFollowsCNAME(t *testing.T) {
	v, _ := caaSetup(t,
		"www.example.test. CNAME cdn.provider.test.",
		`cdn.provider.test. CAA 0 issue "other-ca.example"`,
		`example.test. CAA 0 issue "anvil.example"`)
	err := v.CheckCAA(bg, "www.example.test", false, testAccount, ChallengeHTTP01)
	wantProblem(t, err, ProblemCAA, "prevents issuance")
}

func TestCAACNAMEToNothingClimbsFromTheName(t *testing.T) {
	// The CNAME target has no CAA; the climb continues from the parent of
	// the name asked for, not of the target (RFC 8659 §3).
	v, _ := caaSetup(t,
		"www.example.test. CNAME cdn.provider.test.",
		`provider.test. CAA 0 issue "other-ca.example"`,
		`example.test. CAA 0 issue "anvil.example"`)
	wantOK(t, v.CheckCAA(bg, "www.example.test", false, testAccount, ChallengeHTTP01))
}

func TestCAAServFailRefuses(t *testing.T) {
	v, d := caaSetup(t, `test. CAA 0 issue "anvil.example"`)
	d.setRcode("example.test", dns.RcodeServerFailure)
	err := v.CheckCAA(bg, "www.example.test", false, testAccount, ChallengeHTTP01)
	wantProblem(t, err, ProblemDNS, "While processing CAA for www.example.test", "SERVFAIL looking up CAA for example.test")
}

// The levels are looked up at once, but the outcome is the climb's: a set
// found closer to the name decides, whatever a level above it answers (the
// climb would never have asked), and a failure closer to the name refuses
// even when a level above has a set that allows.
func TestCAAClosestAnswerDecidesWhateverAboveSays(t *testing.T) {
	v, d := caaSetup(t, `sub.example.test. CAA 0 issue "anvil.example"`)
	d.setRcode("example.test", dns.RcodeServerFailure)
	d.setRcode("test", dns.RcodeServerFailure)
	wantOK(t, v.CheckCAA(bg, "www.sub.example.test", false, testAccount, ChallengeHTTP01))

	v, d = caaSetup(t, `example.test. CAA 0 issue "anvil.example"`)
	d.setRcode("sub.example.test", dns.RcodeServerFailure)
	err := v.CheckCAA(bg, "www.sub.example.test", false, testAccount, ChallengeHTTP01)
	wantProblem(t, err, ProblemDNS, "SERVFAIL looking up CAA for sub.example.test")
}

func TestCAAResolverDownRefuses(t *testing.T) {
	v := newTestValidator(t, startDNS(t), func(c *Config) { c.Resolvers = []string{"127.0.0.1:" + itoa(closedPort(t))} })
	err := v.CheckCAA(bg, "example.test", false, testAccount, ChallengeHTTP01)
	wantProblem(t, err, ProblemDNS, "While processing CAA for example.test", "DNS problem")
}

func TestCAADisabled(t *testing.T) {
	d := startDNS(t)
	d.add(t, `example.test. CAA 0 issue "other-ca.example"`)
	d.setRcode("www.example.test", dns.RcodeServerFailure)
	v := newTestValidator(t, d, func(c *Config) { c.DisableCAA = true; c.CAAIdentities = nil })
	wantOK(t, v.CheckCAA(bg, "example.test", false, testAccount, ChallengeHTTP01))
	wantOK(t, v.CheckCAA(bg, "www.example.test", false, testAccount, ChallengeHTTP01))
	if q := d.queries.Load(); q != 0 {
		t.Errorf("%d DNS queries with CAA disabled, want none", q)
	}
}

func TestCAAMalformedName(t *testing.T) {
	v, _ := caaSetup(t)
	err := v.CheckCAA(bg, "exa mple.test", false, testAccount, ChallengeHTTP01)
	wantProblem(t, err, ProblemMalformed, "not a valid DNS name")
}

func TestParseIssueValue(t *testing.T) {
	for _, tc := range []struct {
		in     string
		issuer string
		params []caaParam
		bad    bool
	}{
		{in: "anvil.example", issuer: "anvil.example"},
		{in: ";", issuer: ""},
		{in: "", issuer: ""},
		{in: " anvil.example ; accounturi = https://a/b ; validationmethods=dns-01 ", issuer: "anvil.example",
			params: []caaParam{{"accounturi", "https://a/b"}, {"validationmethods", "dns-01"}}},
		{in: "anvil.example; a=", issuer: "anvil.example", params: []caaParam{{"a", ""}}},
		{in: "anvil.example;;", issuer: "anvil.example"},
		{in: "anvil.example; a=b c", bad: true},
		{in: "anvil.example; a", bad: true},
		{in: "anvil.example; -a=b", bad: true},
		{in: "anvil.example; a=\x01", bad: true},
		{in: "anvil..example", bad: true},
		{in: "-anvil.example", bad: true},
		{in: "anvil.example.", bad: true},
		{in: "anvil example", bad: true},
		{in: "anvil.example; a=é", bad: true},
	} {
		issuer, params, err := parseIssueValue(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseIssueValue(%q) accepted; want an error", tc.in)
			}
			continue
		}
		if err != nil || issuer != tc.issuer || !equalParams(params, tc.params) {
			t.Errorf("parseIssueValue(%q) = %q, %v, %v; want %q, %v", tc.in, issuer, params, err, tc.issuer, tc.params)
		}
	}
}

func equalParams(a, b []caaParam) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzCAAValue feeds hostile issue values through parsing and evaluation:
// whatever the value, there is an answer and no panic, and a value that does
// not parse never authorises.
func FuzzCAAValue(f *testing.F) {
	for _, s := range []string{
		"anvil.example", ";", "anvil.example; accounturi=https://x/y", "anvil.example; validationmethods=,",
		"anvil.example;;;=", "\x00", strings.Repeat("a.", 200), "anvil.example; validationmethods=http-01," + strings.Repeat("x", 300),
	} {
		f.Add(s)
	}
	v := &Validator{cfg: Config{CAAIdentities: []string{"anvil.example"}}}
	f.Fuzz(func(t *testing.T, value string) {
		_, _, err := parseIssueValue(value)
		ok, _ := v.caaPermits(value, testAccount, ChallengeHTTP01)
		if err != nil && ok {
			t.Fatalf("malformed value %q authorises", value)
		}
		rr := &dns.CAA{Hdr: dns.RR_Header{Name: "x.test.", Rrtype: dns.TypeCAA, Class: dns.ClassINET}, Tag: "issue", Value: value}
		_ = v.evaluateCAA("x.test", "x.test", []dns.RR{rr}, true, testAccount, ChallengeDNS01)
	})
}
