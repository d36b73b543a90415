package validation

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

const (
	wellKnownPath = "/.well-known/acme-challenge/"
	// maxHeaderBytes bounds the response headers a target may send.
	maxHeaderBytes = 16 << 10
	// maxLocation bounds a redirect target; real ones are short.
	maxLocation = 2048
	// maxBodyQuote is how much of a wrong body a problem detail shows,
	// escaped: enough to recognise a misconfigured server, too little to
	// carry anything the target wants a client to display.
	maxBodyQuote = 64
)

// hop is one URL of an http-01 redirect chain, with where it will connect.
type hop struct {
	url  *url.URL
	host string     // DNS name or IP literal (no brackets)
	ip   netip.Addr // set when host is an IP literal
	port int
}

// validateHTTP01 fetches http://<identifier>/.well-known/acme-challenge/<token>
// (RFC 8555 §8.3, RFC 8738 §3), following at most MaxRedirects redirects to
// http or https on the configured ports, and compares the body, trailing
// whitespace removed, with the key authorization.
func (v *Validator) validateHTTP01(ctx context.Context, at *attempt, t target, token, keyAuth string) *Problem {
	h := hop{host: t.String(), ip: t.ip, port: v.cfg.HTTPPort}
	h.url = &url.URL{Scheme: "http", Host: urlHost(h.host, h.port, 80), Path: wellKnownPath + token}
	return v.followChain(ctx, at, h, keyAuth)
}

// followChain fetches h, following at most MaxRedirects redirects (each
// checked by redirectTarget, none twice), and compares the final body with
// want: the fetch of http-01 and of the v1 front end's simpleHttps, which
// differ only in their first URL and in what the body must hold.
func (v *Validator) followChain(ctx context.Context, at *attempt, h hop, want string) *Problem {
	seen := map[string]bool{h.url.String(): true}
	for redirects := 0; ; redirects++ {
		res, prob := v.fetch(ctx, at, h)
		if prob != nil {
			return prob
		}
		if res.location == "" {
			return v.checkBody(h, res, want)
		}
		if redirects >= v.cfg.MaxRedirects {
			return newProblem(ProblemConnection, nil, "Fetching %s: too many redirects (more than %d)", h.url, v.cfg.MaxRedirects)
		}
		next, prob := v.redirectTarget(h, res.location)
		if prob != nil {
			return prob
		}
		if seen[next.url.String()] {
			return newProblem(ProblemConnection, nil, "Fetching %s: redirect loop: %s was already fetched", h.url, next.url)
		}
		seen[next.url.String()] = true
		h = next
	}
}

// fetchResult is a response that was neither an error nor unreadable: a
// redirect (location set) or a final status with its body.
type fetchResult struct {
	status   int
	location string
	body     []byte
	tooLong  bool
}

// fetch makes one GET of h: connect ourselves through the attempt's one
// resolution of the name (or to the IP literal of an IP identifier), then
// hand exactly that connection to an http.Transport that uses no proxy, no
// keep-alive and no compression, and whose DialContext can only return it:
// net/http never resolves or dials on its own.
func (v *Validator) fetch(ctx context.Context, at *attempt, h hop) (*fetchResult, *Problem) {
	conn, addr, prob, ce := at.dial(ctx, h.host, h.ip, h.port)
	if prob != nil {
		return nil, prob
	}
	if ce != nil {
		return nil, newProblem(ProblemConnection, ce, "Fetching %s: %s", h.url, ce.detail())
	}
	defer conn.Close()

	var used atomic.Bool
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			// The transport gets the connection we chose, once; it never
			// resolves or dials on its own.
			if used.Swap(true) {
				return nil, errors.New("connection already used")
			}
			return conn, nil
		},
		TLSClientConfig: &tls.Config{
			// A redirect to https is followed without checking the
			// certificate: what proves control is the body, and the target
			// may well be serving a self-signed certificate.
			InsecureSkipVerify: true, //nolint:gosec
			ServerName:         serverName(h),
			MinVersion:         tls.VersionTLS12,
		},
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		TLSHandshakeTimeout:    v.cfg.ConnectTimeout.Duration,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url.String(), nil)
	if err != nil {
		return nil, newProblem(ProblemServerInternal, err, "could not build the request for %s", h.url)
	}
	req.Header.Set("User-Agent", v.cfg.UserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, afterConnectProblem(h.url, addr, err)
	}
	defer resp.Body.Close()

	res := &fetchResult{status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		if !followedRedirect(resp.StatusCode) {
			return nil, newProblem(ProblemConnection, nil, "Fetching %s: redirect with status %d is not allowed (only 301, 302, 307 and 308 are followed)", h.url, resp.StatusCode)
		}
		res.location = resp.Header.Get("Location")
		if res.location == "" {
			return nil, newProblem(ProblemConnection, nil, "Fetching %s: HTTP %d redirect without a Location header", h.url, resp.StatusCode)
		}
		return res, nil
	case resp.StatusCode == http.StatusOK:
		body, err := io.ReadAll(io.LimitReader(resp.Body, v.cfg.MaxBodyBytes+1))
		if err != nil {
			return nil, afterConnectProblem(h.url, addr, err)
		}
		res.tooLong = int64(len(body)) > v.cfg.MaxBodyBytes
		res.body = body
	}
	return res, nil
}

// afterConnectProblem describes a failure once connected: a timeout waiting
// for the response, a TLS failure on an https redirect, or the server
// breaking the exchange.
func afterConnectProblem(u *url.URL, addr netip.AddrPort, err error) *Problem {
	if isTimeout(err) {
		return newProblem(ProblemConnection, err, "Fetching %s: timeout after connect to %s (the server did not answer in time)", u, addr)
	}
	if u.Scheme == "https" {
		if text, ok := tlsErrText(err); ok {
			return newProblem(ProblemTLS, err, "Fetching %s: TLS error with %s: %s", u, addr, text)
		}
	}
	if strings.Contains(err.Error(), "malformed HTTP") {
		return newProblem(ProblemConnection, err, "Fetching %s: malformed HTTP response from %s", u, addr)
	}
	return newProblem(ProblemConnection, err, "Fetching %s: %s by %s", u, netErrText(err), addr)
}

// checkBody decides a final response: 200 with the key authorization, trailing
// whitespace ignored (RFC 8555 §8.3), is success.
func (v *Validator) checkBody(h hop, res *fetchResult, keyAuth string) *Problem {
	if res.status != http.StatusOK {
		return newProblem(ProblemUnauthorized, nil, "Invalid response from %s: HTTP %d", h.url, res.status)
	}
	if res.tooLong {
		return newProblem(ProblemIncorrectResponse, nil, "Invalid response from %s: the body is larger than %d bytes; it must be just the key authorization", h.url, v.cfg.MaxBodyBytes)
	}
	got := strings.TrimRight(string(res.body), " \t\r\n")
	if got != keyAuth {
		return newProblem(ProblemIncorrectResponse, nil, "The key authorization file from %s did not match this challenge: expected %q, got %s", h.url, keyAuth, quote(got, maxBodyQuote))
	}
	return nil
}

// redirectTarget applies checkRedirectTarget to a Location received from
// cur, and words a refusal for the subscriber: which URL redirected, where
// to (quoted and cut short), and the rule that failed.
func (v *Validator) redirectTarget(cur hop, location string) (hop, *Problem) {
	u, host, port, err := checkRedirectTarget(cur.url, location, redirectPorts{http: v.cfg.HTTPPort, tls: v.cfg.TLSPort})
	if err != nil {
		return hop{}, newProblem(ProblemConnection, err, "Fetching %s: %s (Location %s)", cur.url, err, quote(location, 128))
	}
	return hop{url: u, host: host, port: port}, nil
}

// urlHost writes host and port as a URL authority, leaving out the scheme's
// default port so the Host header is what a browser would send.
func urlHost(host string, port, def int) string {
	if port == def {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// serverName is the SNI for an https redirect: the name, or none for an IP.
func serverName(h hop) string {
	if h.ip.IsValid() {
		return ""
	}
	return h.host
}
