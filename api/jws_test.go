package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
)

// The unit tests of the JWS checks of RFC 8555 6.2-6.5, one function at a
// time, split as verifyPOST is. e2e/hostile_test.go sends the same kinds of
// requests to the built binary; these pin each rule down on its own.

const jwsTestBase = "https://acme.test"

// fakeCore is the core as the JWS checks see it: accounts by ID. Any
// other call panics (the nil embedded interface), so a test that reaches the
// core where it should not fails loudly.
type fakeCore struct {
	Core
	accounts map[string]*jose.JSONWebKey
	err      error // returned by Account when set
	calls    int
}

func (f *fakeCore) Account(_ context.Context, id string) (*storage.Account, *jose.JSONWebKey, error) {
	f.calls++
	if f.err != nil {
		return nil, nil, f.err
	}
	key, ok := f.accounts[id]
	if !ok {
		return nil, nil, acme.AccountDoesNotExist("no account %s", id)
	}
	return &storage.Account{ID: id}, key, nil
}

func jwsTestServer(t *testing.T, core *fakeCore) *Server {
	t.Helper()
	if core == nil {
		core = &fakeCore{}
	}
	s, err := New(Config{BaseURL: jwsTestBase, Core: core, Nonces: NewLocalNonces(0), MaxBodyBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// problem renders err as the server would and returns its type (without
// namespace) and HTTP status, so the tests assert what a client sees.
func (s *Server) problemFor(t *testing.T, err error) (string, int) {
	t.Helper()
	if err == nil {
		return "", 0
	}
	var p *acme.Problem
	if !errors.As(err, &p) {
		t.Fatalf("%v is not a problem", err)
	}
	rec := httptest.NewRecorder()
	s.writeProblem(rec, httptest.NewRequest(http.MethodPost, jwsTestBase+"/", nil), err)
	typ, _ := problemOf(t, rec)
	return typ, rec.Code
}

// Keys made once: RSA key generation is slow under -race.
var (
	keyP256, _    = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyP256b, _   = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyP384, _    = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	keyRSA, _     = rsa.GenerateKey(rand.Reader, 2048)
	_, keyEd25519 = mustEd25519()
)

func mustEd25519() (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return pub, priv
}

func jwkJSON(t *testing.T, k any) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes a flattened JWS by hand, so that a test can put anything in the
// protected header, signed by key with alg's hash.
func sign(t *testing.T, key crypto.Signer, header map[string]any, payload string) *flattenedJWS {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	prot := base64.RawURLEncoding.EncodeToString(hb)
	pl := base64.RawURLEncoding.EncodeToString([]byte(payload))
	input := []byte(prot + "." + pl)
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		d := sha256.Sum256(input)
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, input)
	}
	return &flattenedJWS{Protected: prot, Payload: pl, Signature: base64.RawURLEncoding.EncodeToString(sig)}
}

func (j *flattenedJWS) body() string {
	b, _ := json.Marshal(j)
	return string(b)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func postRequest(url, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/jose+json")
	return r
}

// validPOSTRequest: the HTTP request around the JWS.
func TestValidPOSTRequest(t *testing.T) {
	s := jwsTestServer(t, nil)
	for _, tc := range []struct {
		name       string
		ct         string
		nonceHdr   bool
		body       string
		wantType   string
		wantStatus int
	}{
		{name: "valid", ct: "application/jose+json", body: "{}"},
		{name: "content type with parameters", ct: "application/jose+json; charset=utf-8", body: "{}"},
		{name: "body at the limit", ct: "application/jose+json", body: strings.Repeat("x", 1024)},
		{name: "Replay-Nonce request header", ct: "application/jose+json", nonceHdr: true, body: "{}", wantType: "malformed", wantStatus: 400},
		{name: "no content type", body: "{}", wantType: "malformed", wantStatus: 415},
		{name: "application/json", ct: "application/json", body: "{}", wantType: "malformed", wantStatus: 415},
		{name: "body over the limit", ct: "application/jose+json", body: strings.Repeat("x", 1025), wantType: "malformed", wantStatus: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, jwsTestBase+"/acme/new-order", strings.NewReader(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			if tc.nonceHdr {
				r.Header.Set("Replay-Nonce", s.nonces.New())
			}
			body, err := s.validPOSTRequest(r)
			typ, status := s.problemFor(t, err)
			if typ != tc.wantType || status != tc.wantStatus {
				t.Fatalf("got %q %d (%v), want %q %d", typ, status, err, tc.wantType, tc.wantStatus)
			}
			if err == nil && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
		})
	}
}

// parseJWS: the JWS before any key is known.
func TestParseJWS(t *testing.T) {
	jwk := jwkJSON(t, keyP256.Public())
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "ES256", "nonce": "n", "url": jwsTestBase + "/acme/new-account"}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	withJWK := sign(t, keyP256, hdr(map[string]any{"jwk": jwk}), "{}").body()
	withKID := sign(t, keyP256, hdr(map[string]any{"kid": jwsTestBase + "/acme/acct/1"}), "{}").body()
	rawHeader := func(h string) string {
		return (&flattenedJWS{Protected: b64(h), Payload: b64("{}"), Signature: b64("sig")}).body()
	}
	for _, tc := range []struct {
		name     string
		body     string
		mode     keyMode
		wantType string // "" for success
		wantIn   string // in the detail
	}{
		{name: "jwk for a jwk endpoint", body: withJWK, mode: needJWK},
		{name: "kid for a kid endpoint", body: withKID, mode: needKID},
		{name: "jwk where either will do", body: withJWK, mode: eitherKey},
		{name: "kid where either will do", body: withKID, mode: eitherKey},
		{name: "POST-as-GET", body: sign(t, keyP256, hdr(map[string]any{"kid": "k"}), "").body(), mode: needKID},

		{name: "not JSON", body: "protected.payload.signature", wantType: "malformed", wantIn: "not a JWS"},
		{name: "duplicate member", body: `{"protected":"e30","protected":"e30","payload":"","signature":"c2ln"}`, wantType: "malformed"},
		{name: "general serialization", body: `{"payload":"","signatures":[]}`, wantType: "malformed", wantIn: `"signatures"`},
		{name: "unprotected header", body: `{"protected":"e30","header":{},"payload":"","signature":"c2ln"}`, wantType: "malformed", wantIn: `"header"`},
		{name: "member not a string", body: `{"protected":1,"payload":"","signature":"c2ln"}`, wantType: "malformed", wantIn: "must be a string"},
		{name: "detached payload", body: `{"protected":"e30","signature":"c2ln"}`, wantType: "malformed", wantIn: "detached"},
		{name: "no protected header", body: `{"payload":"","signature":"c2ln"}`, wantType: "malformed", wantIn: "protected header"},
		{name: "protected header not base64url", body: `{"protected":"e30=","payload":"","signature":"c2ln"}`, wantType: "malformed", wantIn: "base64url"},
		{name: "protected header not JSON", body: rawHeader("alg"), wantType: "malformed", wantIn: "protected header"},
		{name: "protected header with duplicate alg", body: rawHeader(`{"alg":"ES256","alg":"none"}`), wantType: "malformed", wantIn: "protected header"},
		{name: "b64", body: sign(t, keyP256, hdr(map[string]any{"jwk": jwk, "b64": false}), "{}").body(), mode: needJWK, wantType: "malformed", wantIn: "b64"},
		{name: "crit", body: sign(t, keyP256, hdr(map[string]any{"jwk": jwk, "crit": []string{"exp"}}), "{}").body(), mode: needJWK, wantType: "malformed", wantIn: "crit"},
		{name: "alg none", body: rawHeader(`{"alg":"none","nonce":"n","url":"u","kid":"k"}`), wantType: "badSignatureAlgorithm"},
		{name: "alg HS256", body: rawHeader(`{"alg":"HS256","nonce":"n","url":"u","kid":"k"}`), wantType: "badSignatureAlgorithm"},
		{name: "no alg", body: rawHeader(`{"nonce":"n","url":"u","kid":"k"}`), wantType: "badSignatureAlgorithm"},
		{name: "no signature", body: (&flattenedJWS{Protected: b64(`{"alg":"ES256","kid":"k"}`), Payload: ""}).body(), wantType: "malformed", wantIn: "signature"},
		{name: "both jwk and kid", body: sign(t, keyP256, hdr(map[string]any{"jwk": jwk, "kid": "k"}), "{}").body(), mode: eitherKey, wantType: "malformed", wantIn: "not both"},
		{name: "neither jwk nor kid", body: sign(t, keyP256, hdr(nil), "{}").body(), mode: eitherKey, wantType: "malformed", wantIn: "one of jwk and kid"},
		{name: "jwk null is no jwk", body: sign(t, keyP256, hdr(map[string]any{"jwk": json.RawMessage("null")}), "{}").body(), mode: eitherKey, wantType: "malformed", wantIn: "one of jwk and kid"},
		{name: "kid for a jwk endpoint", body: withKID, mode: needJWK, wantType: "malformed", wantIn: "jwk header"},
		{name: "jwk for a kid endpoint", body: withJWK, mode: needKID, wantType: "malformed", wantIn: "kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jws, h, err := parseJWS([]byte(tc.body), tc.mode)
			if tc.wantType == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if jws == nil || h == nil || h.Alg != "ES256" {
					t.Fatalf("parsed %+v %+v", jws, h)
				}
				return
			}
			var p *acme.Problem
			if !errors.As(err, &p) || p.Type != acme.ProblemNS+tc.wantType || !strings.Contains(p.Detail, tc.wantIn) {
				t.Fatalf("got %v, want %s about %q", err, tc.wantType, tc.wantIn)
			}
		})
	}
}

// validPOSTURL: the signed url is the one the request went to (RFC 8555 6.4).
func TestValidPOSTURL(t *testing.T) {
	s := jwsTestServer(t, nil)
	for _, tc := range []struct {
		name, requestURL, signedURL string
		ok                          bool
	}{
		{"same URL", jwsTestBase + "/acme/new-order", jwsTestBase + "/acme/new-order", true},
		{"same URL with query", jwsTestBase + "/acme/acct/1/orders?cursor=abc", jwsTestBase + "/acme/acct/1/orders?cursor=abc", true},
		{"another resource", jwsTestBase + "/acme/new-order", jwsTestBase + "/acme/new-account", false},
		{"another host", jwsTestBase + "/acme/new-order", "https://other.test/acme/new-order", false},
		{"http, not https", jwsTestBase + "/acme/new-order", "http://acme.test/acme/new-order", false},
		{"a query the request lacks", jwsTestBase + "/acme/acct/1/orders", jwsTestBase + "/acme/acct/1/orders?cursor=abc", false},
		{"path only", jwsTestBase + "/acme/new-order", "/acme/new-order", false},
		{"trailing slash", jwsTestBase + "/acme/new-order", jwsTestBase + "/acme/new-order/", false},
		{"no url", jwsTestBase + "/acme/new-order", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.validPOSTURL(postRequest(tc.requestURL, ""), &protectedHeader{URL: tc.signedURL})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if typ, status := s.problemFor(t, err); typ != "unauthorized" || status != http.StatusForbidden {
				t.Fatalf("got %q %d (%v), want unauthorized 403", typ, status, err)
			}
		})
	}
}

// lookupKey: the key that must have signed, from the jwk or the account.
func TestLookupKey(t *testing.T) {
	core := &fakeCore{accounts: map[string]*jose.JSONWebKey{
		"p256": {Key: keyP256.Public()},
		"ed":   {Key: keyEd25519.Public()},
	}}
	s := jwsTestServer(t, core)
	acct := func(id string) string { return jwsTestBase + "/acme/acct/" + id }
	privateJWK := jwkJSON(t, keyP256)
	for _, tc := range []struct {
		name        string
		h           protectedHeader
		coreErr     error
		wantType    string // "" for success
		wantAccount string // the account found by kid
		wantCalls   int    // calls to the core
	}{
		{name: "jwk P-256 ES256", h: protectedHeader{Alg: "ES256", JWK: jwkJSON(t, keyP256.Public())}},
		{name: "jwk P-384 ES384", h: protectedHeader{Alg: "ES384", JWK: jwkJSON(t, keyP384.Public())}},
		{name: "jwk RSA RS256", h: protectedHeader{Alg: "RS256", JWK: jwkJSON(t, keyRSA.Public())}},
		{name: "jwk Ed25519 EdDSA", h: protectedHeader{Alg: "EdDSA", JWK: jwkJSON(t, keyEd25519.Public())}},
		{name: "jwk with a private key", h: protectedHeader{Alg: "ES256", JWK: privateJWK}, wantType: "badPublicKey"},
		{name: "jwk not a key", h: protectedHeader{Alg: "ES256", JWK: json.RawMessage(`{"kty":"EC","crv":"P-256"}`)}, wantType: "badPublicKey"},
		{name: "jwk symmetric", h: protectedHeader{Alg: "ES256", JWK: json.RawMessage(`{"kty":"oct","k":"c2VjcmV0"}`)}, wantType: "badPublicKey"},
		{name: "ES256 with a P-384 jwk", h: protectedHeader{Alg: "ES256", JWK: jwkJSON(t, keyP384.Public())}, wantType: "badSignatureAlgorithm"},
		{name: "ES256 with an RSA jwk", h: protectedHeader{Alg: "ES256", JWK: jwkJSON(t, keyRSA.Public())}, wantType: "badSignatureAlgorithm"},
		{name: "RS256 with an EC jwk", h: protectedHeader{Alg: "RS256", JWK: jwkJSON(t, keyP256.Public())}, wantType: "badSignatureAlgorithm"},

		{name: "kid of an account", h: protectedHeader{Alg: "ES256", KID: acct("p256")}, wantAccount: "p256", wantCalls: 1},
		{name: "kid of an Ed25519 account", h: protectedHeader{Alg: "EdDSA", KID: acct("ed")}, wantAccount: "ed", wantCalls: 1},
		{name: "kid, alg the account key cannot make", h: protectedHeader{Alg: "ES256", KID: acct("ed")}, wantType: "badSignatureAlgorithm", wantCalls: 1},
		{name: "kid of no account", h: protectedHeader{Alg: "ES256", KID: acct("nobody")}, wantType: "accountDoesNotExist", wantCalls: 1},
		{name: "kid of another server", h: protectedHeader{Alg: "ES256", KID: "https://other.test/acme/acct/p256"}, wantType: "accountDoesNotExist"},
		{name: "kid not a URL", h: protectedHeader{Alg: "ES256", KID: "p256"}, wantType: "accountDoesNotExist"},
		{name: "kid with no ID", h: protectedHeader{Alg: "ES256", KID: acct("")}, wantType: "accountDoesNotExist"},
		{name: "kid below an account", h: protectedHeader{Alg: "ES256", KID: acct("p256/orders")}, wantType: "accountDoesNotExist"},
		{name: "kid, core fails", h: protectedHeader{Alg: "ES256", KID: acct("p256")}, coreErr: acme.ServerInternal(errors.New("db down"), "looking up the account"), wantType: "serverInternal", wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core.calls, core.err = 0, tc.coreErr
			req, key, err := s.lookupKey(context.Background(), &tc.h)
			if core.calls != tc.wantCalls {
				t.Errorf("%d calls to the core, want %d", core.calls, tc.wantCalls)
			}
			if tc.wantType != "" {
				if typ, _ := s.problemFor(t, err); typ != tc.wantType {
					t.Fatalf("got %q (%v), want %s", typ, err, tc.wantType)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.wantAccount == "" {
				if req.jwk == nil || req.jwk != key || req.account != nil {
					t.Fatalf("jwk request: jwk %v key %v account %v", req.jwk, key, req.account)
				}
				return
			}
			if req.account == nil || req.account.ID != tc.wantAccount || req.accountKey != key || req.jwk != nil {
				t.Fatalf("kid request: account %+v, key %v, jwk %v", req.account, key, req.jwk)
			}
		})
	}
}

// verifySignature: the signature, by the key lookupKey found.
func TestVerifySignature(t *testing.T) {
	h := map[string]any{"alg": "ES256", "nonce": "n", "url": jwsTestBase + "/acme/new-order", "kid": "k"}
	key := &jose.JSONWebKey{Key: keyP256.Public()}
	good := sign(t, keyP256, h, `{"a":1}`)
	tampered := *good
	tampered.Payload = b64(`{"a":2}`)
	otherKey := sign(t, keyP256b, h, `{"a":1}`)
	smuggled := *good
	smuggled.Signature = good.Signature + "." + good.Signature
	notB64 := *good
	notB64.Signature = "!!!"
	rsaSigned := sign(t, keyRSA, map[string]any{"alg": "RS256", "kid": "k"}, "")
	for _, tc := range []struct {
		name string
		jws  *flattenedJWS
		alg  string
		key  *jose.JSONWebKey
		want string // payload; "" with wantErr
		err  bool
	}{
		{name: "valid", jws: good, alg: "ES256", key: key, want: `{"a":1}`},
		{name: "valid RSA POST-as-GET", jws: rsaSigned, alg: "RS256", key: &jose.JSONWebKey{Key: keyRSA.Public()}, want: ""},
		{name: "payload changed after signing", jws: &tampered, alg: "ES256", key: key, err: true},
		{name: "signed by another key", jws: otherKey, alg: "ES256", key: key, err: true},
		{name: "a dot smuggled into the signature", jws: &smuggled, alg: "ES256", key: key, err: true},
		{name: "signature not base64url", jws: &notB64, alg: "ES256", key: key, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload, err := verifySignature(tc.jws, &protectedHeader{Alg: tc.alg}, tc.key)
			if tc.err {
				var p *acme.Problem
				if !errors.As(err, &p) || p.Type != acme.ProblemNS+"malformed" {
					t.Fatalf("got %v, want malformed", err)
				}
				return
			}
			if err != nil || string(payload) != tc.want {
				t.Fatalf("got %q, %v; want %q", payload, err, tc.want)
			}
		})
	}
}

// validNonce: a nonce this server issued, used once.
func TestValidNonce(t *testing.T) {
	s := jwsTestServer(t, nil)
	used := s.nonces.New()
	if err := s.validNonce(context.Background(), &protectedHeader{Nonce: used}); err != nil {
		t.Fatalf("fresh nonce refused: %v", err)
	}
	for _, tc := range []struct{ name, nonce string }{
		{"used before", used},
		{"none", ""},
		{"not one of ours", b64("0123456789abcdefghij")},
		{"not base64url", "!!!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.validNonce(context.Background(), &protectedHeader{Nonce: tc.nonce})
			if typ, status := s.problemFor(t, err); typ != "badNonce" || status != http.StatusBadRequest {
				t.Fatalf("got %q %d (%v), want badNonce 400", typ, status, err)
			}
		})
	}
}

// verifyPOST puts the checks together: a valid request comes out with its
// payload and key, and the nonce is spent only by a request that passed every
// other check, so a client can fix its request and retry with the same nonce.
func TestVerifyPOST(t *testing.T) {
	core := &fakeCore{accounts: map[string]*jose.JSONWebKey{"a1": {Key: keyP256.Public()}}}
	s := jwsTestServer(t, core)
	url := jwsTestBase + "/acme/new-order"
	kid := jwsTestBase + "/acme/acct/a1"

	nonce := s.nonces.New()
	wrongURL := sign(t, keyP256, map[string]any{"alg": "ES256", "nonce": nonce, "url": jwsTestBase + "/acme/new-account", "kid": kid}, `{"x":1}`)
	if _, err := s.verifyPOST(postRequest(url, wrongURL.body()), needKID); err == nil {
		t.Fatal("wrong url accepted")
	}
	badSig := sign(t, keyP256b, map[string]any{"alg": "ES256", "nonce": nonce, "url": url, "kid": kid}, `{"x":1}`)
	if _, err := s.verifyPOST(postRequest(url, badSig.body()), needKID); err == nil {
		t.Fatal("signature by another key accepted")
	}

	good := sign(t, keyP256, map[string]any{"alg": "ES256", "nonce": nonce, "url": url, "kid": kid}, `{"x":1}`)
	req, err := s.verifyPOST(postRequest(url, good.body()), needKID)
	if err != nil {
		t.Fatalf("valid request refused (its nonce spent by a refused one?): %v", err)
	}
	if string(req.payload) != `{"x":1}` || req.postAsGet || req.account == nil || req.account.ID != "a1" || req.jwk != nil {
		t.Fatalf("request %+v", req)
	}
	if _, err := s.verifyPOST(postRequest(url, good.body()), needKID); err == nil {
		t.Fatal("replayed request accepted")
	} else if typ, _ := s.problemFor(t, err); typ != "badNonce" {
		t.Fatalf("replay: %v, want badNonce", err)
	}

	newAcct := jwsTestBase + "/acme/new-account"
	asGet := sign(t, keyEd25519, map[string]any{"alg": "EdDSA", "nonce": s.nonces.New(), "url": newAcct, "jwk": jwkJSON(t, keyEd25519.Public())}, "")
	req, err = s.verifyPOST(postRequest(newAcct, asGet.body()), needJWK)
	if err != nil {
		t.Fatalf("jwk POST-as-GET refused: %v", err)
	}
	if !req.postAsGet || req.jwk == nil || req.account != nil {
		t.Fatalf("request %+v", req)
	}
}
