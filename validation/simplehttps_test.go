package validation

import (
	"net/http"
	"testing"
)

// simpleHTTPSSetup serves h over TLS (httptest's self-signed certificate) on
// the port the validator uses for https.
func simpleHTTPSSetup(t *testing.T, h http.HandlerFunc, edit func(*Config)) (*Validator, *challengeServer, *testDNS) {
	t.Helper()
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	s := startHTTP(t, true, h)
	v := newTestValidator(t, d, func(c *Config) {
		c.TLSPort = s.port
		if edit != nil {
			edit(c)
		}
	})
	return v, s, d
}

// The seed's simpleHttps: the token itself, over HTTPS on the TLS port, with a
// certificate nobody checks.
func TestSimpleHTTPSSuccess(t *testing.T) {
	v, s, _ := simpleHTTPSSetup(t, serveKeyAuth(testToken+"\n"), nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth))
	if s.hits.Load() != 1 {
		t.Fatalf("%d requests, want 1", s.hits.Load())
	}
}

// The content must be the token: the key authorization (what http-01 wants)
// is not it.
func TestSimpleHTTPSWrongBody(t *testing.T) {
	v, _, _ := simpleHTTPSSetup(t, serveKeyAuth(testKeyAuth), nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "did not match")
}

// Plain HTTP on the TLS port is not HTTPS.
func TestSimpleHTTPSNeedsTLS(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	s := startHTTP(t, false, serveKeyAuth(testToken))
	v := newTestValidator(t, d, func(c *Config) { c.TLSPort = s.port })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth)
	var p *Problem
	if err == nil || !asProblem(err, &p) {
		t.Fatalf("plain HTTP passed simpleHttps: %v", err)
	}
	t.Logf("%s: %s", p.Type, p.Detail)
}

// The address filters of http-01 hold: no connection to a private address
// unless configured.
func TestSimpleHTTPSPrivateTargetsRefused(t *testing.T) {
	v, s, _ := simpleHTTPSSetup(t, serveKeyAuth(testToken), func(c *Config) { c.AllowPrivateTargets = false })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "does not connect to", "127.0.0.1 (loopback)")
	if s.hits.Load() != 0 {
		t.Fatalf("the server got %d requests; no connection should be made", s.hits.Load())
	}
}

// Redirects follow the Baseline Requirements' rules: to another port than
// the configured ones is refused.
func TestSimpleHTTPSRedirectRules(t *testing.T) {
	v, _, _ := simpleHTTPSSetup(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://example.test:8443/.well-known/acme-challenge/"+testToken, http.StatusFound)
	}, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "8443")
}

func TestSimpleHTTPSNotForIPsOrWildcards(t *testing.T) {
	v, _, _ := simpleHTTPSSetup(t, serveKeyAuth(testToken), nil)
	wantProblem(t, v.Validate(bg, ipIdent("127.0.0.1"), ChallengeSimpleHTTPS, testToken, testKeyAuth), ProblemMalformed)
	wantProblem(t, v.Validate(bg, dnsIdent("*.example.test"), ChallengeSimpleHTTPS, testToken, testKeyAuth), ProblemMalformed)
}
