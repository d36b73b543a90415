package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/acme"
)

// testServer is a Server whose core is never reached by the requests these
// tests send: every one is refused before it.
func testServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{BaseURL: "https://acme.test", Core: &fakeCore{}, Nonces: NewLocalNonces(0)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func problemOf(t *testing.T, rec *httptest.ResponseRecorder) (string, string) {
	t.Helper()
	var p struct{ Type, Detail string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("%d, not a problem document: %q", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	return strings.TrimPrefix(p.Type, acme.ProblemNS), p.Detail
}

// RFC 8555 6.3: a GET (or HEAD) of any resource but the directory and
// newNonce is 405 malformed, and RFC 9110 15.5.6 wants an Allow header.
func TestGETOnPOSTOnlyResources(t *testing.T) {
	s := testServer(t)
	for _, path := range []string{
		"/acme/acct/abc", "/acme/acct/abc/orders", "/acme/order/abc", "/acme/order/abc/finalize",
		"/acme/authz/abc", "/acme/chall/abc", "/acme/cert/0123abcd", "/acme/cert/0123abcd/1",
		"/acme/new-account", "/acme/new-order", "/acme/revoke-cert", "/acme/key-change", "/acme/new-authz",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(method, "https://acme.test"+path, nil))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
				t.Errorf("%s %s: %d, Allow %q; want 405 with Allow: POST", method, path, rec.Code, rec.Header().Get("Allow"))
				continue
			}
			if method == http.MethodGet {
				if typ, _ := problemOf(t, rec); typ != "malformed" {
					t.Errorf("GET %s: problem %s, want malformed", path, typ)
				}
			}
		}
	}
	// newNonce keeps GET and HEAD.
	for method, want := range map[string]int{http.MethodGet: http.StatusNoContent, http.MethodHead: http.StatusOK} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(method, "https://acme.test/acme/new-nonce", nil))
		if rec.Code != want || rec.Header().Get("Replay-Nonce") == "" {
			t.Errorf("%s newNonce: %d", method, rec.Code)
		}
	}
}

// RFC 8555 6.5.1: the nonce belongs in the protected header; a Replay-Nonce
// request header is refused, not ignored.
func TestReplayNonceRequestHeader(t *testing.T) {
	s := testServer(t)
	req := httptest.NewRequest(http.MethodPost, "https://acme.test/acme/new-order", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/jose+json")
	req.Header.Set("Replay-Nonce", s.nonces.New())
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if typ, detail := problemOf(t, rec); rec.Code != http.StatusBadRequest || typ != "malformed" || !strings.Contains(detail, "Replay-Nonce") {
		t.Errorf("%d %s %q, want 400 malformed about the Replay-Nonce header", rec.Code, typ, detail)
	}
}

// A flattened JWS without a payload member is a detached payload (RFC 7515
// Appendix F), not POST-as-GET, which sends "payload": "".
func TestJWSWithoutPayloadMember(t *testing.T) {
	if _, err := parseFlattened([]byte(`{"protected":"e30","signature":"c2ln"}`)); err == nil || !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), "payload") {
		t.Errorf("no payload member: %v, want malformed about the payload", err)
	}
	jws, err := parseFlattened([]byte(`{"protected":"e30","payload":"","signature":"c2ln"}`))
	if err != nil || jws.Payload != "" {
		t.Errorf("POST-as-GET: %v", err)
	}
}
