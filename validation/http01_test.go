package validation

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/config"
)

const challengePath = "/.well-known/acme-challenge/" + testToken

// challengeServer is an HTTP server on 127.0.0.1 whose handler the test sets,
// counting requests and remembering the last Host and User-Agent.
type challengeServer struct {
	*httptest.Server
	port  int
	hits  atomic.Int64
	mu    sync.Mutex
	host  string
	agent string
}

func startHTTP(t *testing.T, tlsToo bool, h http.HandlerFunc) *challengeServer {
	t.Helper()
	s := &challengeServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.host, s.agent = r.Host, r.UserAgent()
		s.mu.Unlock()
		h(w, r)
	}))
	if tlsToo {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	s.port = portOf(t, s.URL)
	return s
}

func (s *challengeServer) lastHost() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

func serveKeyAuth(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != challengePath {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}
}

func redirectTo(loc string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loc, http.StatusFound)
	}
}

// httpSetup starts DNS with example.test → 127.0.0.1 and a challenge server,
// and a Validator pointed at both.
func httpSetup(t *testing.T, h http.HandlerFunc, edit func(*Config)) (*Validator, *challengeServer, *testDNS) {
	t.Helper()
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	s := startHTTP(t, false, h)
	v := newTestValidator(t, d, func(c *Config) {
		c.HTTPPort = s.port
		if edit != nil {
			edit(c)
		}
	})
	return v, s, d
}

func TestHTTP01Success(t *testing.T) {
	v, s, _ := httpSetup(t, serveKeyAuth(testKeyAuth+"\r\n \t\n"), func(c *Config) { c.UserAgent = "anvil-test" })
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
	if got, want := s.lastHost(), fmt.Sprintf("example.test:%d", s.port); got != want {
		t.Errorf("Host header %q, want %q", got, want)
	}
	if s.agent != "anvil-test" {
		t.Errorf("User-Agent %q, want the configured one", s.agent)
	}
}

func TestHTTP01WrongBody(t *testing.T) {
	v, _, _ := httpSetup(t, serveKeyAuth("not-the-key-authorization"), nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "did not match", `got "not-the-key-authorization"`)
}

func TestHTTP01LeadingWhitespaceIsNotIgnored(t *testing.T) {
	v, _, _ := httpSetup(t, serveKeyAuth(" "+testKeyAuth), nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "did not match")
}

func TestHTTP01NotFound(t *testing.T) {
	v, _, _ := httpSetup(t, http.NotFound, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemUnauthorized, "HTTP 404", "http://example.test:")
}

func TestHTTP01RedirectToHTTPSOnTheTLSPort(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1", "other.test. A 127.0.0.1")
	tlsSrv := startHTTP(t, true, serveKeyAuth(testKeyAuth))
	// No port in the Location: https means the configured TLS port.
	s := startHTTP(t, false, redirectTo("https://other.test"+challengePath))
	v := newTestValidator(t, d, func(c *Config) { c.HTTPPort, c.TLSPort = s.port, tlsSrv.port })
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
	if tlsSrv.hits.Load() != 1 {
		t.Errorf("TLS server got %d requests, want 1", tlsSrv.hits.Load())
	}
	if got, want := tlsSrv.lastHost(), fmt.Sprintf("other.test:%d", tlsSrv.port); got != want {
		t.Errorf("Host header after redirect %q, want %q", got, want)
	}
}

func TestHTTP01RelativeRedirect(t *testing.T) {
	v, s, _ := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			fmt.Fprint(w, testKeyAuth)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
	}, nil)
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
	if s.hits.Load() != 2 {
		t.Errorf("%d requests, want 2", s.hits.Load())
	}
}

func TestHTTP01RedirectLoop(t *testing.T) {
	v, _, _ := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			http.Redirect(w, r, challengePath, http.StatusFound)
			return
		}
		http.Redirect(w, r, "/a", http.StatusFound)
	}, nil)
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "redirect loop")
}

func TestHTTP01TooManyRedirects(t *testing.T) {
	var n atomic.Int64
	v, s, _ := httpSetup(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/r%d", n.Add(1)), http.StatusTemporaryRedirect)
	}, func(c *Config) { c.MaxRedirects = 3 })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "too many redirects (more than 3)")
	if s.hits.Load() != 4 {
		t.Errorf("%d requests, want 4 (the first and 3 redirects)", s.hits.Load())
	}
}

func TestHTTP01NoRedirectsWhenDisabled(t *testing.T) {
	v, _, _ := httpSetup(t, redirectTo("/elsewhere"), func(c *Config) { c.MaxRedirects = -1 })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "too many redirects")
}

func TestHTTP01RefusedRedirects(t *testing.T) {
	for _, tc := range []struct {
		name, location, phrase string
	}{
		{"disallowed port", "http://example.test:1" + challengePath, "redirect to port 1 is not allowed"},
		{"https on a disallowed port", "https://example.test:8443" + challengePath, "redirect to port 8443 is not allowed"},
		{"other scheme", "ftp://example.test" + challengePath, `redirect to scheme "ftp" is not allowed`},
		{"unspecified address", "http://0.0.0.0" + challengePath, "redirect to an IP address is not allowed"},
		{"multicast address", "http://[ff02::1]" + challengePath, "redirect to an IP address is not allowed"},
		{"unparsable URL", "http://exa mple.test" + challengePath, "not a valid URL"},
		{"bad host name", "http://bad-.test" + challengePath, "not a valid DNS name"},
		{"too long", "/" + strings.Repeat("a", 3000), "longer than 2048 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, s, _ := httpSetup(t, redirectTo(tc.location), nil)
			err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
			wantProblem(t, err, ProblemConnection, tc.phrase)
			if s.hits.Load() != 1 {
				t.Errorf("%d requests, want 1: the redirect must not be followed", s.hits.Load())
			}
		})
	}
}

func TestHTTP01OversizedBody(t *testing.T) {
	v, _, _ := httpSetup(t, serveKeyAuth(testKeyAuth+strings.Repeat(" ", 10000)), func(c *Config) { c.MaxBodyBytes = 1024 })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemIncorrectResponse, "larger than 1024 bytes")
}

func TestHTTP01ConnectionRefused(t *testing.T) {
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	port := closedPort(t)
	v := newTestValidator(t, d, func(c *Config) { c.HTTPPort = port })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, fmt.Sprintf("connection refused by 127.0.0.1:%d", port))
}

func TestHTTP01Timeout(t *testing.T) {
	// A server that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	// An IP identifier: no DNS, so the short deadline is all spent waiting
	// for the response.
	v := newTestValidator(t, startDNS(t), func(c *Config) {
		c.HTTPPort = portOf(t, ln.Addr().String())
		c.Timeout = config.Duration{Duration: 500 * time.Millisecond}
	})
	err = v.Validate(bg, ipIdent("127.0.0.1"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "timeout after connect to 127.0.0.1:")
}

func TestHTTP01MalformedResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = bufio.NewReader(c).ReadString('\n')
		_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n\r\n"))
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	d := startDNS(t)
	d.add(t, "example.test. A 127.0.0.1")
	v := newTestValidator(t, d, func(c *Config) { c.HTTPPort = portOf(t, ln.Addr().String()) })
	err = v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, "malformed HTTP response")
}

func TestHTTP01IPIdentifier(t *testing.T) {
	s := startHTTP(t, false, serveKeyAuth(testKeyAuth))
	v := newTestValidator(t, startDNS(t), func(c *Config) { c.HTTPPort = s.port })
	wantOK(t, v.Validate(bg, ipIdent("127.0.0.1"), ChallengeHTTP01, testToken, testKeyAuth))
	if got, want := s.lastHost(), fmt.Sprintf("127.0.0.1:%d", s.port); got != want {
		t.Errorf("Host header %q, want %q", got, want)
	}
}

func TestHTTP01IPv6FirstThenIPv4(t *testing.T) {
	// Nothing listens on [::1] at the server's port, so the IPv6 attempt
	// fails and the IPv4 one succeeds.
	v, s, d := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	d.add(t, "example.test. AAAA ::1")
	wantOK(t, v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
	if s.hits.Load() != 1 {
		t.Errorf("%d requests, want 1", s.hits.Load())
	}
}

func TestHTTP01IPv6OnlyFailureNamesTheAddress(t *testing.T) {
	d := startDNS(t)
	d.add(t, "v6only.test. AAAA ::1")
	port := closedPort(t)
	v := newTestValidator(t, d, func(c *Config) { c.HTTPPort = port })
	err := v.Validate(bg, dnsIdent("v6only.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemConnection, fmt.Sprintf("[::1]:%d", port))
}

func TestHTTP01NXDOMAIN(t *testing.T) {
	v, _, _ := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	err := v.Validate(bg, dnsIdent("missing.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "NXDOMAIN looking up A for missing.test")
}

func TestHTTP01NoAddresses(t *testing.T) {
	v, _, d := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	d.add(t, `noaddr.test. TXT "hello"`)
	err := v.Validate(bg, dnsIdent("noaddr.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "no A or AAAA records found for noaddr.test")
}

func TestHTTP01PrivateTargetsRefusedByDefault(t *testing.T) {
	v, s, d := httpSetup(t, serveKeyAuth(testKeyAuth), func(c *Config) { c.AllowPrivateTargets = false })
	err := v.Validate(bg, dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "does not connect to", "127.0.0.1 (loopback)")

	d.add(t, "lan.test. A 192.168.1.10", "lan.test. AAAA fe80::1")
	err = v.Validate(bg, dnsIdent("lan.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "192.168.1.10 (private)", "fe80::1 (link-local)")

	err = v.Validate(bg, ipIdent("10.0.0.1"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemRejectedIdentifier, "10.0.0.1 is not a public address (private)")
	if s.hits.Load() != 0 {
		t.Errorf("the server got %d requests; no connection should be made", s.hits.Load())
	}
}

func TestHTTP01UnspecifiedRefusedEvenWhenPrivateAllowed(t *testing.T) {
	v, _, d := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	err := v.Validate(bg, ipIdent("0.0.0.0"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemRejectedIdentifier, "unspecified")
	d.add(t, "zero.test. A 0.0.0.0")
	err = v.Validate(bg, dnsIdent("zero.test"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "0.0.0.0 (unspecified)")
}

func TestHTTP01LocalhostNamesAreLoopback(t *testing.T) {
	v, s, d := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	wantOK(t, v.Validate(bg, dnsIdent("app.localhost"), ChallengeHTTP01, testToken, testKeyAuth))
	if q := d.queries.Load(); q != 0 {
		t.Errorf("%d DNS queries for a localhost name, want none (RFC 6761 §6.3)", q)
	}
	strict := newTestValidator(t, d, func(c *Config) { c.HTTPPort = s.port; c.AllowPrivateTargets = false })
	err := strict.Validate(bg, dnsIdent("app.localhost"), ChallengeHTTP01, testToken, testKeyAuth)
	wantProblem(t, err, ProblemDNS, "127.0.0.1 (loopback)")
}
