package legacy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
)

const testBase = "https://ca.test"

func testServer() *Server {
	return &Server{cfg: Config{BaseURL: testBase, Nonces: api.NewLocalNonces(time.Minute), MaxBodyBytes: 64 << 10}}
}

type jwsParts struct {
	prot, unprot map[string]any
	payload      string
	key          crypto.Signer
	extra        map[string]any // more outer members
	raw          string         // the whole body, when set
}

func jwkOf(t *testing.T, k crypto.Signer) map[string]any {
	b, err := (&jose.JSONWebKey{Key: k.Public()}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func signWith(t *testing.T, k crypto.Signer, input string) string {
	d := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := k.(type) {
	case *rsa.PrivateKey:
		sig, _ = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case *ecdsa.PrivateKey:
		r, s, _ := ecdsa.Sign(rand.Reader, k, d[:])
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return base64.RawURLEncoding.EncodeToString(sig)
}

func (p jwsParts) body(t *testing.T) string {
	if p.raw != "" {
		return p.raw
	}
	hb, _ := json.Marshal(p.prot)
	p64 := base64.RawURLEncoding.EncodeToString(hb)
	pl64 := base64.RawURLEncoding.EncodeToString([]byte(p.payload))
	m := map[string]any{"protected": p64, "payload": pl64, "signature": signWith(t, p.key, p64+"."+pl64)}
	if p.unprot != nil {
		m["header"] = p.unprot
	}
	for k, v := range p.extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func (s *Server) post(t *testing.T, path, body string) (*signed, error) {
	r := httptest.NewRequest("POST", testBase+path, strings.NewReader(body))
	return s.verify(r)
}

func wantType(t *testing.T, err error, typ string) {
	t.Helper()
	var p *acme.Problem
	if !errors.As(err, &p) || p.Type != acme.ProblemNS+typ {
		t.Fatalf("got %v, want a %s problem", err, typ)
	}
	t.Logf("%s: %s", typ, p.Detail)
}

// What v1 clients send is accepted: alg and jwk unprotected (or in both
// places, equal), no url, RS256 and ES256.
func TestVerifyAcceptsV1Shapes(t *testing.T) {
	s := testServer()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, mk := range map[string]func() jwsParts{
		"rsa split": func() jwsParts {
			return jwsParts{prot: map[string]any{"nonce": s.cfg.Nonces.New()}, unprot: map[string]any{"alg": "RS256", "jwk": jwkOf(t, rk)}, key: rk}
		},
		"rsa both places (acme-client 1.x)": func() jwsParts {
			return jwsParts{prot: map[string]any{"nonce": s.cfg.Nonces.New(), "alg": "RS256", "jwk": jwkOf(t, rk)}, unprot: map[string]any{"alg": "RS256", "jwk": jwkOf(t, rk)}, key: rk}
		},
		"ecdsa protected with url": func() jwsParts {
			return jwsParts{prot: map[string]any{"nonce": s.cfg.Nonces.New(), "alg": "ES256", "jwk": jwkOf(t, ec), "url": testBase + newAuthzPath}, key: ec}
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := mk()
			p.payload = `{"resource":"new-authz"}`
			req, err := s.post(t, newAuthzPath, p.body(t))
			if err != nil {
				t.Fatal(err)
			}
			if string(req.payload) != p.payload {
				t.Fatalf("payload %s", req.payload)
			}
		})
	}
}

// What stays strict.
func TestVerifyRefuses(t *testing.T) {
	s := testServer()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := func() jwsParts {
		return jwsParts{prot: map[string]any{"nonce": s.cfg.Nonces.New(), "alg": "ES256", "jwk": jwkOf(t, ec)}, key: ec, payload: `{"resource":"new-authz"}`}
	}
	cases := []struct {
		name, typ string
		edit      func(p *jwsParts)
	}{
		{"alg none unprotected", "badSignatureAlgorithm", func(p *jwsParts) { delete(p.prot, "alg"); p.unprot = map[string]any{"alg": "none"} }},
		{"HS256", "badSignatureAlgorithm", func(p *jwsParts) { p.prot["alg"] = "HS256" }},
		{"alg not the key's", "badSignatureAlgorithm", func(p *jwsParts) { p.prot["alg"] = "RS256" }},
		{"algs disagree", "malformed", func(p *jwsParts) { p.unprot = map[string]any{"alg": "ES384"} }},
		{"keys disagree", "malformed", func(p *jwsParts) { p.unprot = map[string]any{"jwk": jwkOf(t, other)} }},
		{"nonce unprotected", "malformed", func(p *jwsParts) { p.unprot = map[string]any{"nonce": p.prot["nonce"]}; delete(p.prot, "nonce") }},
		{"no nonce", "badNonce", func(p *jwsParts) { delete(p.prot, "nonce") }},
		{"kid", "malformed", func(p *jwsParts) { p.prot["kid"] = testBase + "/acme/v1/reg/x" }},
		{"b64 false", "malformed", func(p *jwsParts) { p.prot["b64"] = false }},
		{"no jwk", "malformed", func(p *jwsParts) { delete(p.prot, "jwk") }},
		{"wrong url", "unauthorized", func(p *jwsParts) { p.prot["url"] = testBase + newRegPath }},
		{"signed by another key", "malformed", func(p *jwsParts) { p.key = other }},
		{"rsa signature under an ec key", "malformed", func(p *jwsParts) { p.key = rk }},
		{"general serialization", "malformed", func(p *jwsParts) { p.extra = map[string]any{"signatures": []any{}} }},
		{"empty payload", "malformed", func(p *jwsParts) { p.payload = "" }},
		{"trailing data", "malformed", func(p *jwsParts) { p.raw = p.body(t) + "{}" }},
		{"duplicate member", "malformed", func(p *jwsParts) { b := p.body(t); p.raw = b[:len(b)-1] + `,"payload":"e30"}` }},
		{"not JSON", "malformed", func(p *jwsParts) { p.raw = "eyJhbGciOiJFUzI1NiJ9.e30.sig" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.edit(&p)
			_, err := s.post(t, newAuthzPath, p.body(t))
			wantType(t, err, tc.typ)
		})
	}
	t.Run("replayed nonce", func(t *testing.T) {
		b := good().body(t)
		if _, err := s.post(t, newAuthzPath, b); err != nil {
			t.Fatal(err)
		}
		_, err := s.post(t, newAuthzPath, b)
		wantType(t, err, "badNonce")
	})
	t.Run("too large", func(t *testing.T) {
		p := good()
		p.payload = `{"resource":"new-authz","x":"` + strings.Repeat("a", 70<<10) + `"}`
		_, err := s.post(t, newAuthzPath, p.body(t))
		if _, status := api.ResolveProblem(err); status != 413 {
			t.Fatalf("got %v, want 413", err)
		}
	})
}

// The resource member must name the endpoint.
func TestDecodeChecksResource(t *testing.T) {
	req := &signed{payload: []byte(`{"resource":"new-reg","contact":[]}`)}
	var body newAuthzRequest
	wantType(t, req.decode(&body, "new-authz"), "malformed")
	var reg newRegRequest
	if err := req.decode(&reg, "new-reg"); err != nil {
		t.Fatal(err)
	}
}

func TestProblemTypesAreV1(t *testing.T) {
	if got := acme.LegacyProblemType(acme.ProblemNS + "badNonce"); got != "urn:acme:error:badNonce" {
		t.Fatal(got)
	}
	raw := legacyError([]byte(`{"type":"urn:ietf:params:acme:error:incorrectResponse","detail":"x","status":403}`))
	if !strings.Contains(string(raw), `"urn:acme:error:incorrectResponse"`) {
		t.Fatalf("stored challenge error not rewritten: %s", raw)
	}
}
