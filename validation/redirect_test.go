package validation

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// redirectWith answers the challenge path with a redirect of the given
// status to /elsewhere, and /elsewhere with the key authorization.
func redirectWith(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			fmt.Fprint(w, testKeyAuth)
			return
		}
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(status)
	}
}

// BRs 3.2.2.4.19: 301, 302, 307 and 308 are followed; 303 and every other
// 3xx fail the validation, and the detail names the status.
func TestHTTP01RedirectStatuses(t *testing.T) {
	for _, status := range []int{301, 302, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			v, s, _ := httpSetup(t, redirectWith(status), nil)
			wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
			if s.hits.Load() != 2 {
				t.Errorf("%d requests, want 2", s.hits.Load())
			}
		})
	}
	for _, status := range []int{300, 303, 304, 305, 306, 309, 399} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			v, s, _ := httpSetup(t, redirectWith(status), nil)
			err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
			wantProblem(t, err, ProblemConnection, fmt.Sprintf("redirect with status %d is not allowed", status))
			if s.hits.Load() != 1 {
				t.Errorf("%d requests, want 1: a %d must not be followed", s.hits.Load(), status)
			}
		})
	}
}

// A redirect to the very server that would answer correctly, spelled as an
// IP address in each way some parser takes for one, is refused before
// anything is resolved or connected to.
func TestHTTP01RedirectToIPLiteral(t *testing.T) {
	for _, host := range []string{
		"127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "127.0.0.1.", "0x7F000001",
	} {
		t.Run(host, func(t *testing.T) {
			var s *challengeServer
			v, s, d := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/ip" {
					fmt.Fprint(w, testKeyAuth)
					return
				}
				http.Redirect(w, r, fmt.Sprintf("http://%s:%d/ip", host, s.port), http.StatusFound)
			}, nil)
			err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
			wantProblem(t, err, ProblemConnection, "redirect to an IP address is not allowed")
			if s.hits.Load() != 1 {
				t.Errorf("%d requests, want 1: the redirect must not be followed", s.hits.Load())
			}
			if q := d.queries.Load(); q != 2 {
				t.Errorf("%d DNS queries, want 2 (A and AAAA of example.test): the IP literal must not be looked up", q)
			}
		})
	}
}

// The pure rule, on every spelling of an address the issue and the WHATWG
// URL standard list, and on the tricks that hide one behind a name.
func TestCheckRedirectTarget(t *testing.T) {
	base := mustURL(t, "http://example.test"+challengePath)
	ports := redirectPorts{http: 80, tls: 443}
	for _, tc := range []struct{ location, phrase string }{
		{"http://127.0.0.1/", "an IP address"},
		{"http://[::1]/", "an IP address"},
		{"http://[::ffff:127.0.0.1]/", "an IP address"},
		{"http://[::ffff:7f00:1]/", "an IP address"},
		{"http://[fe80::1%25eth0]/", "percent-encoded"},
		{"http://2130706433/", "an IP address"},
		{"http://0177.0.0.1/", "an IP address"},
		{"http://0x7f.1/", "an IP address"},
		{"http://0x7f.0.0.1/", "an IP address"},
		{"http://127.1/", "an IP address"},
		{"http://127.0.0.1./", "an IP address"},
		{"http://017700000001/", "an IP address"},
		{"http://0x/", "an IP address"},
		{"http://1.2.3.4/", "an IP address"},
		{"https://203.0.114.7/x", "an IP address"},
		{"https://[2606:4700::1]:443/", "an IP address"},
		{"HTTP://127.0.0.1:80/", "an IP address"},
		{"//127.0.0.1/x", "an IP address"},
		{"http://%31%32%37.0.0.1/", "percent-encoded"},
		{"http://127%2e0%2e0%2e1/", "percent-encoded"},
		{"http://ex%61mple.test/", "percent-encoded"},
		{"http://user@example.test/", "userinfo"},
		{"http://user:pass@example.test/", "userinfo"},
		{"http://example.test@127.0.0.1/", "userinfo"},
		{`http://example.test\@127.0.0.1/`, "userinfo"},
		{`http:\\127.0.0.1\x`, "not a valid URL"},
		{"http://exämple.test/", "non-ASCII"},
		{"http://example.test:8080/", "redirect to port 8080 is not allowed (only 80 and 443)"},
		{"http://example.test:0/", "redirect to port 0 is not allowed"},
		{"http://example.test:99999999999999999999/", "is not allowed"},
		{"gopher://example.test/", `scheme "gopher"`},
		{"javascript:alert(1)", `scheme "javascript"`},
		{"http:opaque", "not a valid URL"},
		{"http:///x", "no host"},
		{"http://exa\x00mple.test/", "not a valid URL"},
		{"http://-bad.test/", "not a valid DNS name"},
	} {
		t.Run(tc.location, func(t *testing.T) {
			u, host, port, err := checkRedirectTarget(base, tc.location, ports)
			if err == nil {
				t.Fatalf("accepted: %s (host %q port %d)", u, host, port)
			}
			if !strings.Contains(err.Error(), tc.phrase) {
				t.Errorf("refusal %q does not contain %q", err, tc.phrase)
			}
		})
	}
	for _, tc := range []struct{ location, want, host string }{
		{"/elsewhere", "http://example.test/elsewhere", "example.test"},
		{"https://Other.Test./x#frag", "https://other.test/x", "other.test"},
		{"http://other.test:443/x", "http://other.test:443/x", "other.test"},
		{"//other.test/x?y=1", "http://other.test/x?y=1", "other.test"},
		{"http://1.2.3.4.example/x", "http://1.2.3.4.example/x", "1.2.3.4.example"},
		{"http://0x7f.example/", "http://0x7f.example/", "0x7f.example"},
	} {
		u, host, _, err := checkRedirectTarget(base, tc.location, ports)
		if err != nil {
			t.Errorf("%s refused: %v", tc.location, err)
			continue
		}
		if u.String() != tc.want || host != tc.host {
			t.Errorf("%s: got %s (host %s), want %s (host %s)", tc.location, u, host, tc.want, tc.host)
		}
	}
}

// The default of at most 10 redirects: the 11th is not followed.
func TestHTTP01AtMostTenRedirects(t *testing.T) {
	var n atomic.Int64
	v, s, _ := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/r%d", n.Add(1)), http.StatusFound)
	}, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "too many redirects (more than 10)")
	if s.hits.Load() != 11 {
		t.Errorf("%d requests, want 11 (the first and 10 redirects)", s.hits.Load())
	}
	if err := (&Config{MaxRedirects: 11, DisableCAA: true}).Validate(); err == nil || !strings.Contains(err.Error(), "max_redirects") {
		t.Errorf("max_redirects: 11 accepted (%v); at most 10 are allowed", err)
	}
}

// A loop through two names ends with a detail that says so.
func TestHTTP01RedirectLoopAcrossNames(t *testing.T) {
	var s *challengeServer
	v, s, d := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
		other := map[string]string{"a.test": "b.test", "b.test": "a.test"}[strings.Split(r.Host, ":")[0]]
		http.Redirect(w, r, fmt.Sprintf("http://%s:%d%s", other, s.port, challengePath), http.StatusMovedPermanently)
	}, nil)
	d.add(t, "a.test. A 127.0.0.1", "b.test. A 127.0.0.1")
	err := v.Validate(bg, dnsIdent("a.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "redirect loop")
	if s.hits.Load() != 2 {
		t.Errorf("%d requests, want 2", s.hits.Load())
	}
}

// replace makes name's records of one type exactly lines (none if empty).
func (d *testDNS) replace(t *testing.T, name string, qtype uint16, lines ...string) {
	t.Helper()
	d.mu.Lock()
	delete(d.records, dnsKey{dns.Fqdn(strings.ToLower(name)), qtype})
	d.mu.Unlock()
	d.add(t, lines...)
}

// One name, one resolution per validation: a redirect back to the same name
// asks DNS nothing more, so a name whose answer changes after the first
// request (DNS rebinding) cannot send the second request anywhere the first
// answer did not allow.
func TestHTTP01OneResolutionPerName(t *testing.T) {
	for _, tc := range []struct{ name, rebindTo string }{
		{"to a refused address", "example.test. A 0.0.0.0"},
		{"to another address", "example.test. AAAA ::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d *testDNS
			v, s, d := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/again" {
					fmt.Fprint(w, testKeyAuth)
					return
				}
				// The attacker's DNS now answers differently, then the
				// target redirects back to the same name.
				d.replace(t, "example.test", dns.TypeA)
				d.add(t, tc.rebindTo)
				http.Redirect(w, r, "http://example.test:"+itoa(portOfHost(r.Host))+"/again", http.StatusFound)
			}, nil)
			wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
			if s.hits.Load() != 2 {
				t.Errorf("%d requests to the first address, want 2", s.hits.Load())
			}
			if q := d.queries.Load(); q != 2 {
				t.Errorf("%d DNS queries, want 2: example.test resolved once (A and AAAA)", q)
			}
		})
	}
}

func portOfHost(hostport string) int {
	var p int
	fmt.Sscanf(hostport[strings.LastIndex(hostport, ":")+1:], "%d", &p)
	return p
}

// tls-alpn-01 resolves once too and dials only filtered addresses: a name
// whose only address is refused gets no connection at all.
func TestTLSALPN01DialsOnlyFilteredAddresses(t *testing.T) {
	d := startDNS(t)
	d.add(t, "zero.test. A 0.0.0.0", "zero.test. AAAA ::")
	v := newTestValidator(t, d, func(c *Config) { c.TLSPort = closedPort(t) })
	err := v.Validate(bg, dnsIdent("zero.test"), ChallengeTLSALPN01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "0.0.0.0 (unspecified)")
	if q := d.queries.Load(); q != 2 {
		t.Errorf("%d DNS queries, want 2 (A and AAAA once)", q)
	}
}

// A wrong body is shown as a short escaped prefix: none of it past 64 bytes,
// and no control character anywhere in the detail.
func TestHTTP01WrongBodyDetailIsShortAndEscaped(t *testing.T) {
	body := "\x1b[2J\x1b[31mpwned\r\n\u202eevil\x00" + strings.Repeat("x", 60) + "SECRET-AFTER-64-BYTES" + strings.Repeat("y", 2000)
	v, _, _ := httpSetup(t, serveKeyAuth(body), nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	p := wantProblem(t, err, ProblemIncorrectResponse, "did not match", `\x1b[2J`)
	if strings.Contains(p.Detail, "SECRET-AFTER-64-BYTES") || strings.Contains(p.Detail, "yyyy") {
		t.Errorf("detail shows body bytes past the first 64: %q", p.Detail)
	}
	wantNoControls(t, p.Detail)
}

// Every character that could break a log line or a terminal, or reorder
// text, is escaped in a detail, whoever built the message.
func TestProblemDetailHasNoControlCharacters(t *testing.T) {
	p := newProblem(ProblemDNS, nil, "name %s and %s", "a\x1b[31m\r\nb\u202ec\u200bd\x7f\u0085", "bad\xffutf8")
	wantNoControls(t, p.Detail)
	for _, want := range []string{`\x1b`, `\x0d`, `\x0a`, `\u202e`, `\u200b`, `\x7f`, `\u0085`, `\xff`} {
		if !strings.Contains(p.Detail, want) {
			t.Errorf("detail %q lacks the escape %s", p.Detail, want)
		}
	}
	if got := newProblem(ProblemDNS, nil, "plain ünïcode ok").Detail; got != "plain ünïcode ok" {
		t.Errorf("printable text changed: %q", got)
	}
}

func wantNoControls(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("detail is not valid UTF-8: %q", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Errorf("detail holds the control or format character %U: %q", r, s)
		}
	}
}

// A Location full of characters a terminal would act on is reported
// escaped.
func TestHTTP01HostileLocationIsEscaped(t *testing.T) {
	for _, loc := range []string{"http://exa\x1b[31mmple.test/", "/\u202etxt.exe", "http://ex\u202eample.test/", "http://127.0.0.1\r\n/"} {
		t.Run(url.PathEscape(loc), func(t *testing.T) {
			v, _, _ := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != challengePath {
					http.NotFound(w, r)
					return
				}
				// Written raw: http.Redirect and Header.Set would clean it.
				w.Header()["Location"] = []string{loc}
				w.WriteHeader(http.StatusFound)
			}, nil)
			err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
			var p *Problem
			if err == nil || !asProblem(err, &p) {
				t.Fatalf("validation passed or no problem: %v", err)
			}
			t.Logf("%s: %s", p.Type, p.Detail)
			wantNoControls(t, p.Detail)
		})
	}
}

func asProblem(err error, p **Problem) bool {
	q, ok := err.(*Problem)
	*p = q
	return ok
}
