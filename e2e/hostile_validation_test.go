package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// hostileHTTP is an http-01 target that bends the rules: per challenge token
// a handler the test chooses answers /.well-known/acme-challenge/<token>,
// while /ka/<token> always serves the right key authorization, so that every
// refused redirect points at an answer that would otherwise pass.
type hostileHTTP struct {
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	keys     map[string]string
}

// startHostileHTTP listens on the port the CA validates http-01 on.
func startHostileHTTP(t *testing.T, ca *CA) *hostileHTTP {
	t.Helper()
	h := &hostileHTTP{handlers: map[string]http.HandlerFunc{}, keys: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ca.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hostileHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if token, ok := strings.CutPrefix(r.URL.Path, "/ka/"); ok {
		io.WriteString(w, h.keys[token])
		return
	}
	token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	if f := h.handlers[token]; f != nil {
		f(w, r)
		return
	}
	http.NotFound(w, r)
}

// challenge orders name, sets how the target answers its http-01 challenge
// (given the token), and returns the challenge as it ends.
func (h *hostileHTTP) challenge(t *testing.T, rc *rawClient, name string, answer func(token string) http.HandlerFunc) acmeChallenge {
	t.Helper()
	_, o := rc.newOrder(nil, name)
	a := rc.authz(o.Authorizations[0])
	ch := a.challenge(t, "http-01")
	h.mu.Lock()
	h.keys[ch.Token] = ch.Token + "." + rc.thumbprint()
	h.handlers[ch.Token] = answer(ch.Token)
	h.mu.Unlock()
	got := rc.respond(ch)
	if az := rc.authz(o.Authorizations[0]); az.Status != got.Status && got.Status == "invalid" {
		t.Errorf("challenge invalid but its authorization is %s", az.Status)
	}
	return got
}

func redirectStatus(status int, location string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(status)
	}
}

// wantInvalid checks a challenge ended invalid with a detail naming the rule
// and free of control characters.
func wantInvalid(t *testing.T, ch acmeChallenge, problemType, rule string) {
	t.Helper()
	if ch.Status != "invalid" || ch.Error == nil {
		t.Fatalf("challenge %s with error %+v, want invalid", ch.Status, ch.Error)
	}
	t.Logf("%s: %s", ch.Error.Type, ch.Error.Detail)
	if ch.Error.Type != "urn:ietf:params:acme:error:"+problemType {
		t.Errorf("problem type %s, want %s", ch.Error.Type, problemType)
	}
	if !strings.Contains(ch.Error.Detail, rule) {
		t.Errorf("detail %q does not name the rule %q", ch.Error.Detail, rule)
	}
	for _, r := range ch.Error.Detail {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			t.Errorf("detail holds the control character %U: %q", r, ch.Error.Detail)
		}
	}
}

// Hostile http-01 targets, through real ACME flows against the built binary:
// each redirect the Baseline Requirements do not allow leaves the
// authorization invalid with a detail that names the rule, though the
// redirect points at the right key authorization.
func TestHostileValidation(t *testing.T) {
	ca := NewCA(t)
	target := startHostileHTTP(t, ca)
	rc := newRawClient(t, ca, newKey(t))
	rc.register()
	ka := func(host string, token string) string {
		return fmt.Sprintf("http://%s/ka/%s", net.JoinHostPort(host, strconv.Itoa(ca.HTTPPort)), token)
	}

	t.Run("a 301 to the key authorization is followed", func(t *testing.T) {
		ch := target.challenge(t, rc, "follow.anvil-e2e.com", func(token string) http.HandlerFunc {
			return redirectStatus(http.StatusMovedPermanently, "/ka/"+token)
		})
		if ch.Status != "valid" {
			t.Fatalf("challenge %s (%+v), want valid", ch.Status, ch.Error)
		}
	})
	t.Run("303", func(t *testing.T) {
		ch := target.challenge(t, rc, "see-other.anvil-e2e.com", func(token string) http.HandlerFunc {
			return redirectStatus(http.StatusSeeOther, "/ka/"+token)
		})
		wantInvalid(t, ch, "connection", "redirect with status 303 is not allowed")
	})
	for _, host := range []string{"127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"} {
		t.Run("IP literal "+host, func(t *testing.T) {
			ch := target.challenge(t, rc, "ip-literal.anvil-e2e.com", func(token string) http.HandlerFunc {
				loc := fmt.Sprintf("http://%s:%d/ka/%s", host, ca.HTTPPort, token)
				return redirectStatus(http.StatusFound, loc)
			})
			wantInvalid(t, ch, "connection", "redirect to an IP address is not allowed")
		})
	}
	t.Run("userinfo", func(t *testing.T) {
		ch := target.challenge(t, rc, "userinfo.anvil-e2e.com", func(token string) http.HandlerFunc {
			return redirectStatus(http.StatusFound, ka("user@ka.anvil-e2e.com", token))
		})
		wantInvalid(t, ch, "connection", "redirect to a URL with userinfo is not allowed")
	})
	t.Run("other port", func(t *testing.T) {
		ch := target.challenge(t, rc, "port.anvil-e2e.com", func(token string) http.HandlerFunc {
			return redirectStatus(http.StatusFound, "http://ka.anvil-e2e.com:8080/ka/"+token)
		})
		wantInvalid(t, ch, "connection", "redirect to port 8080 is not allowed")
	})
	t.Run("too many redirects", func(t *testing.T) {
		ch := target.challenge(t, rc, "many.anvil-e2e.com", func(token string) http.HandlerFunc {
			var mu sync.Mutex
			n := 0
			return func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				loc := fmt.Sprintf("/.well-known/acme-challenge/%s?hop=%d", token, n)
				mu.Unlock()
				http.Redirect(w, r, loc, http.StatusFound)
			}
		})
		wantInvalid(t, ch, "connection", "too many redirects (more than 10)")
	})
	t.Run("loop", func(t *testing.T) {
		ch := target.challenge(t, rc, "loop.anvil-e2e.com", func(token string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				other := map[string]string{"loop.anvil-e2e.com": "loop2.anvil-e2e.com", "loop2.anvil-e2e.com": "loop.anvil-e2e.com"}[strings.Split(r.Host, ":")[0]]
				http.Redirect(w, r, fmt.Sprintf("http://%s:%d%s", other, ca.HTTPPort, r.URL.Path), http.StatusTemporaryRedirect)
			}
		})
		wantInvalid(t, ch, "connection", "redirect loop")
	})
	t.Run("hostile body", func(t *testing.T) {
		ch := target.challenge(t, rc, "body.anvil-e2e.com", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "\x1b[2J\x1b[31mclick here\r\n\u202e"+strings.Repeat("x", 60)+"BEYOND-64-BYTES"+strings.Repeat("y", 4000))
			}
		})
		wantInvalid(t, ch, "incorrectResponse", `\x1b[2J`)
		if strings.Contains(ch.Error.Detail, "BEYOND-64-BYTES") || strings.Contains(ch.Error.Detail, "yyy") {
			t.Errorf("detail shows body bytes past the first 64: %q", ch.Error.Detail)
		}
	})
}

// DNS rebinding: the name answers 127.0.0.1 to the first query and
// 127.0.0.2 to every later one, where a second server holds the right key
// authorization. The first address redirects back to the same name; the CA
// must follow the redirect to the address it resolved first (which answers
// 404), never re-resolve and reach the new one.
func TestHostileValidationRebinding(t *testing.T) {
	ca := NewCA(t)
	target := startHostileHTTP(t, ca)
	var rebound sync.Mutex
	reached := 0
	l, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(ca.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rebound.Lock()
		reached++
		rebound.Unlock()
		token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		target.mu.Lock()
		defer target.mu.Unlock()
		io.WriteString(w, target.keys[token])
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	rc := newRawClient(t, ca, newKey(t))
	rc.register()

	const name = "rebind.anvil-e2e.com"
	ca.DNS.SetA(name+".", net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2))
	ch := target.challenge(t, rc, name, func(token string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.RawQuery == "again" {
				http.NotFound(w, r) // the first address never has the answer
				return
			}
			http.Redirect(w, r, "/.well-known/acme-challenge/"+token+"?again", http.StatusFound)
		}
	})
	rebound.Lock()
	defer rebound.Unlock()
	if reached > 0 {
		t.Errorf("validation reached the rebound address %d times: a redirect re-resolved the name", reached)
	}
	if ch.Status != "invalid" {
		t.Fatalf("challenge %s (%+v): the rebound address answered for the name", ch.Status, ch.Error)
	}
	t.Logf("%s: %s", ch.Error.Type, ch.Error.Detail)
}
