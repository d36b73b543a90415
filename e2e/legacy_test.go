package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The ACME v1 front end (api/legacy), driven by a client written here from
// the slides of draft-barnes-acme (/work/shared/seeds) with Boulder's v1 API
// as the reference for details: new-reg, new-authz, a challenge answered with
// a key authorization, polling the authorization with plain GETs, new-cert
// answered with a DER certificate, revoke-cert.

// withLegacy turns the v1 front end on.
func withLegacy() CAOption {
	return func(o *caOptions) { o.extraYAML += "legacy:\n  enabled: true\n" }
}

const v1DirectoryPath = "/acme/v1/directory"

// v1Client speaks ACME v1 as the clients of 2016-2020 did: the account key
// as jwk, RS256 or ES256, nonces from HEAD on the URL it is about to POST
// to, and (split) alg and jwk in the unprotected header as acme-client 1.x
// and certbot 0.x sent them.
type v1Client struct {
	t     *testing.T
	ca    *CA
	http  *http.Client
	dir   map[string]any
	key   crypto.Signer // *rsa.PrivateKey (RS256) or P-256 (ES256)
	split bool          // alg and jwk in the unprotected header
	// mutate, when set, changes the protected and unprotected headers before
	// signing.
	mutate func(prot, unprot map[string]any)
}

func newV1Client(t *testing.T, ca *CA, key crypto.Signer, split bool) *v1Client {
	t.Helper()
	c := &v1Client{t: t, ca: ca, http: ca.HTTPClient(), key: key, split: split}
	resp, err := c.http.Get(ca.BaseURL + v1DirectoryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the v1 directory: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&c.dir); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *v1Client) url(name string) string {
	u, _ := c.dir[name].(string)
	if u == "" {
		c.t.Fatalf("the v1 directory has no %q", name)
	}
	return u
}

func (c *v1Client) alg() string {
	if _, ok := c.key.(*rsa.PrivateKey); ok {
		return "RS256"
	}
	return "ES256"
}

// nonce sends HEAD to url, as v1 clients did: there is no newNonce.
func (c *v1Client) nonce(url string) string {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		c.t.Fatalf("HEAD %s (%d) gave no Replay-Nonce", url, resp.StatusCode)
	}
	return n
}

func (c *v1Client) jwk() map[string]any {
	b, err := (&jose.JSONWebKey{Key: c.key.Public()}).MarshalJSON()
	if err != nil {
		c.t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func (c *v1Client) thumbprint() string {
	tp, err := (&jose.JSONWebKey{Key: c.key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		c.t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

func (c *v1Client) sign(input string) []byte {
	digest := sha256.Sum256([]byte(input))
	switch k := c.key.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		if err != nil {
			c.t.Fatal(err)
		}
		return sig
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			c.t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
	c.t.Fatalf("unsupported key %T", c.key)
	return nil
}

// jws signs payload for url with a fresh nonce.
func (c *v1Client) jws(url string, payload any) []byte {
	c.t.Helper()
	pl, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	prot := map[string]any{"nonce": c.nonce(url)}
	unprot := map[string]any{}
	if c.split {
		unprot["alg"], unprot["jwk"] = c.alg(), c.jwk()
	} else {
		prot["alg"], prot["jwk"], prot["url"] = c.alg(), c.jwk(), url
	}
	if c.mutate != nil {
		c.mutate(prot, unprot)
	}
	hb, _ := json.Marshal(prot)
	p64 := base64.RawURLEncoding.EncodeToString(hb)
	pl64 := base64.RawURLEncoding.EncodeToString(pl)
	body := map[string]any{"protected": p64, "payload": pl64, "signature": base64.RawURLEncoding.EncodeToString(c.sign(p64 + "." + pl64))}
	if len(unprot) > 0 {
		body["header"] = unprot
	}
	out, _ := json.Marshal(body)
	return out
}

// send POSTs a body as v1 clients did, with whatever Content-Type.
func (c *v1Client) send(url string, body []byte) (int, []byte, http.Header) {
	c.t.Helper()
	resp, err := c.http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (c *v1Client) post(url string, payload any) (int, []byte, http.Header) {
	c.t.Helper()
	return c.send(url, c.jws(url, payload))
}

func (c *v1Client) get(url string) (int, []byte, http.Header) {
	c.t.Helper()
	resp, err := c.http.Get(url)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// register is new-reg; it returns the registration URL.
func (c *v1Client) register() string {
	c.t.Helper()
	status, body, h := c.post(c.url("new-reg"), map[string]any{"resource": "new-reg", "contact": []string{"mailto:v1@anvil-e2e.com"}})
	if status != http.StatusCreated {
		c.t.Fatalf("new-reg: %d %s", status, body)
	}
	loc := h.Get("Location")
	if !strings.HasPrefix(loc, c.ca.BaseURL+"/") {
		c.t.Fatalf("new-reg Location %q is not absolute", loc)
	}
	if next := linkRel(h, "next"); len(next) != 1 || next[0] != c.url("new-authz") {
		c.t.Fatalf("new-reg Link next = %v, want new-authz", next)
	}
	var reg struct {
		Key     map[string]any `json:"key"`
		Contact []string       `json:"contact"`
	}
	json.Unmarshal(body, &reg)
	if len(reg.Contact) != 1 || reg.Key["kty"] == nil {
		c.t.Fatalf("new-reg answered %s", body)
	}
	return loc
}

type v1Challenge struct {
	Type   string          `json:"type"`
	Status string          `json:"status"`
	URI    string          `json:"uri"`
	Token  string          `json:"token"`
	Error  json.RawMessage `json:"error"`
}

type v1Authz struct {
	Status     string `json:"status"`
	Identifier struct{ Type, Value string }
	Challenges []v1Challenge `json:"challenges"`
}

// newAuthz is new-authz for name with the seed's identifier type "domain".
func (c *v1Client) newAuthz(name string) (string, v1Authz) {
	c.t.Helper()
	status, body, h := c.post(c.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "domain", "value": name}})
	if status != http.StatusCreated {
		c.t.Fatalf("new-authz %s: %d %s", name, status, body)
	}
	if next := linkRel(h, "next"); len(next) != 1 || next[0] != c.url("new-cert") {
		c.t.Fatalf("new-authz Link next = %v, want new-cert", next)
	}
	var a v1Authz
	if err := json.Unmarshal(body, &a); err != nil {
		c.t.Fatal(err)
	}
	if a.Status != "pending" || a.Identifier.Value != name {
		c.t.Fatalf("new-authz answered %s", body)
	}
	return h.Get("Location"), a
}

func (a v1Authz) challenge(t *testing.T, typ string) v1Challenge {
	t.Helper()
	for _, ch := range a.Challenges {
		if ch.Type == typ {
			if ch.URI == "" {
				t.Fatalf("%s challenge without uri", typ)
			}
			return ch
		}
	}
	t.Fatalf("no %s challenge in %+v", typ, a)
	return v1Challenge{}
}

// authorize proves control of name with http-01 (or dns-01) and polls the
// authorization with plain GETs until it is valid.
func (c *v1Client) authorize(name, typ string) string {
	c.t.Helper()
	authzURL, a := c.newAuthz(name)
	ch := a.challenge(c.t, typ)
	ka := ch.Token + "." + c.thumbprint()
	switch typ {
	case "http-01":
		c.ca.challengeServer(c.t).set(ch.Token, ka)
	case "dns-01":
		d := sha256.Sum256([]byte(ka))
		c.ca.DNS.SetTXT("_acme-challenge."+name, base64.RawURLEncoding.EncodeToString(d[:]))
	}
	status, body, _ := c.post(ch.URI, map[string]any{"resource": "challenge", "type": typ, "keyAuthorization": ka})
	if status != http.StatusAccepted {
		c.t.Fatalf("answering %s: %d %s", typ, status, body)
	}
	var answered v1Challenge
	json.Unmarshal(body, &answered)
	if answered.Status != "pending" && answered.Status != "valid" {
		c.t.Fatalf("the answer shows the challenge %q; v1 knows pending, valid, invalid", answered.Status)
	}
	for range 100 {
		status, body, _ := c.get(authzURL)
		if status != http.StatusOK {
			c.t.Fatalf("GET authorization: %d %s", status, body)
		}
		var cur v1Authz
		json.Unmarshal(body, &cur)
		switch cur.Status {
		case "valid":
			return authzURL
		case "pending":
			time.Sleep(100 * time.Millisecond)
		default:
			c.t.Fatalf("authorization became %s: %s", cur.Status, body)
		}
	}
	c.t.Fatal("authorization still pending")
	return ""
}

// csr makes a CSR for names with a fresh P-256 key, base64url DER.
func v1CSR(t *testing.T, key crypto.Signer, names ...string) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(der)
}

// newCert is new-cert; it returns the certificate and the response headers.
func (c *v1Client) newCert(csr string, authzs ...string) (*x509.Certificate, http.Header) {
	c.t.Helper()
	payload := map[string]any{"resource": "new-cert", "csr": csr}
	if len(authzs) > 0 {
		payload["authorizations"] = authzs
	}
	status, body, h := c.post(c.url("new-cert"), payload)
	if status != http.StatusCreated {
		c.t.Fatalf("new-cert: %d %s", status, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/pkix-cert" {
		c.t.Fatalf("new-cert Content-Type %q", ct)
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		c.t.Fatalf("new-cert body is not one DER certificate: %v", err)
	}
	return cert, h
}

// verifyV1 checks what a v1 client does with a new-cert answer: the
// certificate at Location is the same DER, the issuer at "up" is one DER
// certificate, and the two verify to the dev root.
func (c *v1Client) verifyV1(cert *x509.Certificate, h http.Header, name string) {
	c.t.Helper()
	loc := h.Get("Location")
	if !strings.HasPrefix(loc, c.ca.BaseURL+"/") {
		c.t.Fatalf("new-cert Location %q is not absolute", loc)
	}
	status, body, _ := c.get(loc)
	if status != http.StatusOK || !bytes.Equal(body, cert.Raw) {
		c.t.Fatalf("GET the certificate URL: %d, same DER: %v", status, bytes.Equal(body, cert.Raw))
	}
	up := linkRel(h, "up")
	if len(up) != 1 {
		c.t.Fatalf("new-cert Link up = %v", up)
	}
	status, body, _ = c.get(up[0])
	if status != http.StatusOK {
		c.t.Fatalf("GET up: %d %s", status, body)
	}
	issuer, err := x509.ParseCertificate(body)
	if err != nil {
		c.t.Fatalf("up is not one DER certificate: %v", err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(issuer)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: c.ca.Roots, Intermediates: inter}); err != nil {
		c.t.Fatalf("the v1 certificate does not verify to the dev root: %v", err)
	}
}

func (c *v1Client) revoke(cert *x509.Certificate) (int, []byte, http.Header) {
	c.t.Helper()
	return c.post(c.url("revoke-cert"), map[string]any{"resource": "revoke-cert", "certificate": base64.RawURLEncoding.EncodeToString(cert.Raw)})
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// expectV1Problem checks a v1 problem document: status, and a type in the
// urn:acme:error: namespace.
func expectV1Problem(t *testing.T, status int, body []byte, h http.Header, wantStatus int, wantType string) {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("status %d, body is not a problem document: %s", status, body)
	}
	if status != wantStatus || p.Type != "urn:acme:error:"+wantType {
		t.Fatalf("got %d %s (%s), want %d urn:acme:error:%s", status, p.Type, p.Detail, wantStatus, wantType)
	}
	if h.Get("Replay-Nonce") == "" {
		t.Fatal("error response without a Replay-Nonce")
	}
	t.Logf("%d %s: %s", status, wantType, p.Detail)
}

// TestLegacyV1Flow: a client written from the slides gets certificates over
// ACME v1 (RS256 with the split header, and ES256 with a protected one; http-01
// and dns-01), each verifying to the dev root, and revokes them, by the
// account and by the certificate's key.
func TestLegacyV1Flow(t *testing.T) {
	ca := NewCA(t, withLegacy())

	t.Run("rsa-split-header-http01", func(t *testing.T) {
		c := newV1Client(t, ca, rsaKey(t), true)
		regURL := c.register()
		// The same key again: 409 and the registration's Location, as Boulder.
		status, body, h := c.post(c.url("new-reg"), map[string]any{"resource": "new-reg"})
		if status != http.StatusConflict || h.Get("Location") != regURL {
			t.Fatalf("new-reg again: %d Location %q %s", status, h.Get("Location"), body)
		}
		// The registration takes updates (the slides' "registration + agreement").
		status, body, _ = c.post(regURL, map[string]any{"resource": "reg", "contact": []string{"mailto:v1-updated@anvil-e2e.com"}})
		if status != http.StatusAccepted || !strings.Contains(string(body), "v1-updated@") {
			t.Fatalf("reg update: %d %s", status, body)
		}

		name := "v1-http.anvil-e2e.com"
		authzURL := c.authorize(name, "http-01")
		cert, h := c.newCert(v1CSR(t, newKey(t), name), authzURL)
		c.verifyV1(cert, h, name)
		if st := ca.certStatus(t, cert); st != "valid" {
			t.Fatalf("status before revocation %q", st)
		}
		status, body, _ = c.revoke(cert)
		if status != http.StatusOK {
			t.Fatalf("revoke-cert: %d %s", status, body)
		}
		if st := ca.certStatus(t, cert); !strings.HasPrefix(st, "revoked") {
			t.Fatalf("status after revocation %q", st)
		}
		status, body, h = c.revoke(cert)
		expectV1Problem(t, status, body, h, http.StatusBadRequest, "alreadyRevoked")
	})

	t.Run("ecdsa-protected-header-dns01-revoked-by-cert-key", func(t *testing.T) {
		c := newV1Client(t, ca, newKey(t), false)
		c.register()
		name := "v1-dns.anvil-e2e.com"
		c.authorize(name, "dns-01")
		certKey := newKey(t)
		// No authorizations member: the account's valid ones are found by name.
		cert, h := c.newCert(v1CSR(t, certKey, name))
		c.verifyV1(cert, h, name)
		byKey := newV1Client(t, ca, certKey, false)
		status, body, _ := byKey.revoke(cert)
		if status != http.StatusOK {
			t.Fatalf("revoke-cert signed by the certificate key: %d %s", status, body)
		}
		if st := ca.certStatus(t, cert); !strings.HasPrefix(st, "revoked") {
			t.Fatalf("status after revocation %q", st)
		}
	})

	t.Run("nonce-on-every-url", func(t *testing.T) {
		c := newV1Client(t, ca, newKey(t), false)
		for _, u := range []string{c.url("new-reg"), c.url("new-authz"), c.url("new-cert"), c.url("revoke-cert"), ca.BaseURL + v1DirectoryPath} {
			c.nonce(u)
			resp, err := c.http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("Replay-Nonce") == "" {
				t.Fatalf("GET %s (%d) without Replay-Nonce", u, resp.StatusCode)
			}
		}
	})
}

// TestLegacyOffByDefault: without legacy.enabled there is no v1 API, and the
// RFC 8555 directory is the same either way.
func TestLegacyOffByDefault(t *testing.T) {
	ca := NewCA(t)
	resp, err := ca.HTTPClient().Get(ca.BaseURL + v1DirectoryPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET the v1 directory with legacy off: %d, want 404", resp.StatusCode)
	}
}

// TestLegacyHostile: the hostile requests of the RFC 8555 front end that
// apply to v1 each get their problem, in the urn:acme:error: namespace.
func TestLegacyHostile(t *testing.T) {
	ca := NewCA(t, withLegacy())
	alice := newV1Client(t, ca, rsaKey(t), true)
	alice.register()
	aliceName := "v1-alice.anvil-e2e.com"
	aliceAuthz := alice.authorize(aliceName, "http-01")
	mallory := newV1Client(t, ca, newKey(t), false)
	mallory.register()

	t.Run("replayed-nonce", func(t *testing.T) {
		body := alice.jws(alice.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "v1-replay.anvil-e2e.com"}})
		if status, b, _ := alice.send(alice.url("new-authz"), body); status != http.StatusCreated {
			t.Fatalf("first send: %d %s", status, b)
		}
		status, b, h := alice.send(alice.url("new-authz"), body)
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "badNonce")
	})

	t.Run("replayed-new-cert-concurrently-one-certificate", func(t *testing.T) {
		body := alice.jws(alice.url("new-cert"), map[string]any{"resource": "new-cert", "csr": v1CSR(t, newKey(t), aliceName)})
		const n = 10
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := alice.http.Post(alice.url("new-cert"), "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		created := 0
		for _, s := range statuses {
			if s == http.StatusCreated {
				created++
			} else if s != http.StatusBadRequest {
				t.Errorf("a replay got %d", s)
			}
		}
		if created != 1 {
			t.Fatalf("%d replays of one new-cert made %d certificates (statuses %v), want exactly 1", n, created, statuses)
		}
	})

	t.Run("alg-none", func(t *testing.T) {
		c := *alice
		c.mutate = func(prot, unprot map[string]any) { unprot["alg"] = "none" }
		status, b, h := c.post(c.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "v1-none.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "badSignatureAlgorithm")
	})

	t.Run("alg-hs256", func(t *testing.T) {
		c := *mallory
		c.mutate = func(prot, unprot map[string]any) { prot["alg"] = "HS256" }
		status, b, h := c.post(c.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "v1-hmac.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "badSignatureAlgorithm")
	})

	t.Run("nonce-unprotected", func(t *testing.T) {
		c := *alice
		c.mutate = func(prot, unprot map[string]any) { unprot["nonce"] = prot["nonce"]; delete(prot, "nonce") }
		status, b, h := c.post(c.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "v1-nn.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "malformed")
	})

	t.Run("wrong-url-header", func(t *testing.T) {
		c := *mallory
		c.mutate = func(prot, unprot map[string]any) { prot["url"] = c.url("new-reg") }
		status, b, h := c.post(c.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "v1-url.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("resource-mismatch", func(t *testing.T) {
		status, b, h := mallory.post(mallory.url("new-authz"), map[string]any{"resource": "new-reg", "identifier": map[string]string{"type": "dns", "value": "v1-res.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "malformed")
		status, b, h = mallory.post(mallory.url("new-authz"), map[string]any{"identifier": map[string]string{"type": "dns", "value": "v1-res.anvil-e2e.com"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "malformed")
	})

	t.Run("two-signatures", func(t *testing.T) {
		var one map[string]any
		json.Unmarshal(mallory.jws(mallory.url("new-authz"), map[string]any{"resource": "new-authz"}), &one)
		general, _ := json.Marshal(map[string]any{"payload": one["payload"], "signatures": []any{
			map[string]any{"protected": one["protected"], "signature": one["signature"]},
			map[string]any{"protected": one["protected"], "signature": one["signature"]},
		}})
		status, b, h := mallory.send(mallory.url("new-authz"), general)
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "malformed")
	})

	t.Run("duplicate-keys-in-payload", func(t *testing.T) {
		c := *mallory
		url := c.url("new-authz")
		prot := map[string]any{"nonce": c.nonce(url), "alg": c.alg(), "jwk": c.jwk()}
		hb, _ := json.Marshal(prot)
		p64 := base64.RawURLEncoding.EncodeToString(hb)
		pl64 := base64.RawURLEncoding.EncodeToString([]byte(`{"resource":"new-authz","identifier":{"type":"dns","value":"a.anvil-e2e.com"},"identifier":{"type":"dns","value":"b.anvil-e2e.com"}}`))
		body, _ := json.Marshal(map[string]any{"protected": p64, "payload": pl64, "signature": base64.RawURLEncoding.EncodeToString(c.sign(p64 + "." + pl64))})
		status, b, h := c.send(url, body)
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "malformed")
	})

	t.Run("another-accounts-authorization", func(t *testing.T) {
		status, b, h := mallory.post(mallory.url("new-cert"), map[string]any{"resource": "new-cert", "csr": v1CSR(t, newKey(t), aliceName), "authorizations": []string{aliceAuthz}})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
		// Answering alice's challenge with mallory's key is refused too.
		_, body, _ := alice.get(aliceAuthz)
		var a v1Authz
		json.Unmarshal(body, &a)
		ch := a.Challenges[0]
		status, b, h = mallory.post(ch.URI, map[string]any{"resource": "challenge", "keyAuthorization": ch.Token + "." + mallory.thumbprint()})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("names-without-authorization", func(t *testing.T) {
		status, b, h := mallory.post(mallory.url("new-cert"), map[string]any{"resource": "new-cert", "csr": v1CSR(t, newKey(t), aliceName)})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
		status, b, h = alice.post(alice.url("new-cert"), map[string]any{"resource": "new-cert", "csr": v1CSR(t, newKey(t), aliceName, "v1-unvalidated.anvil-e2e.com")})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("csr-with-account-key", func(t *testing.T) {
		status, b, h := alice.post(alice.url("new-cert"), map[string]any{"resource": "new-cert", "csr": v1CSR(t, alice.key, aliceName)})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "badCSR")
	})

	t.Run("wrong-key-authorization", func(t *testing.T) {
		_, a := mallory.newAuthz("v1-wrongka.anvil-e2e.com")
		ch := a.challenge(t, "http-01")
		status, b, h := mallory.post(ch.URI, map[string]any{"resource": "challenge", "type": "http-01", "keyAuthorization": ch.Token + ".not-the-thumbprint"})
		expectV1Problem(t, status, b, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("no-simplehttps-unless-configured", func(t *testing.T) {
		_, a := mallory.newAuthz("v1-nosimple.anvil-e2e.com")
		for _, ch := range a.Challenges {
			if ch.Type == "simpleHttps" {
				t.Fatal("simpleHttps offered without legacy.simple_https")
			}
		}
	})

	t.Run("special-use-name", func(t *testing.T) {
		status, b, h := mallory.post(mallory.url("new-authz"), map[string]any{"resource": "new-authz", "identifier": map[string]string{"type": "dns", "value": "printer.local"}})
		expectV1Problem(t, status, b, h, http.StatusBadRequest, "rejectedIdentifier")
	})
}

// TestLegacySimpleHTTPS: the seed's own challenge, when configured. The
// applicant serves the token over HTTPS with a self-signed certificate on
// the port the CA validates https on; the answer names the path; the CA
// fetches, compares, and the certificate follows.
func TestLegacySimpleHTTPS(t *testing.T) {
	ca := NewCA(t, func(o *caOptions) { o.extraYAML += "legacy:\n  enabled: true\n  simple_https: true\n" })
	var mu sync.Mutex
	files := map[string]string{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body, ok := files[r.URL.Path]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, body)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ca.TLSPort))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.StartTLS() // httptest's self-signed certificate: simpleHttps does not check it
	t.Cleanup(srv.Close)

	c := newV1Client(t, ca, rsaKey(t), true)
	c.register()
	name := "v1-simplehttps.anvil-e2e.com"
	authzURL, a := c.newAuthz(name)
	ch := a.challenge(t, "simpleHttps")
	// A path other than the token is refused before any fetch.
	status, body, h := c.post(ch.URI, map[string]any{"resource": "challenge", "type": "simpleHttps", "path": "Hf5GrX4Q7EB"})
	expectV1Problem(t, status, body, h, http.StatusBadRequest, "malformed")

	mu.Lock()
	files["/.well-known/acme-challenge/"+ch.Token] = ch.Token
	mu.Unlock()
	status, body, _ = c.post(ch.URI, map[string]any{"resource": "challenge", "type": "simpleHttps", "path": ch.Token})
	if status != http.StatusAccepted {
		t.Fatalf("answering simpleHttps: %d %s", status, body)
	}
	for i := 0; ; i++ {
		_, body, _ := c.get(authzURL)
		var cur v1Authz
		json.Unmarshal(body, &cur)
		if cur.Status == "valid" {
			break
		}
		if cur.Status != "pending" || i == 100 {
			t.Fatalf("authorization: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cert, h := c.newCert(v1CSR(t, newKey(t), name), authzURL)
	c.verifyV1(cert, h, name)
	if status, body, _ := c.revoke(cert); status != http.StatusOK {
		t.Fatalf("revoke-cert: %d %s", status, body)
	}
}

// TestLegacyTermsOfService: with terms configured, the v1 directory names
// them, new-reg without the agreement is refused with a terms-of-service
// link, and one that agrees gets them back as its agreement.
func TestLegacyTermsOfService(t *testing.T) {
	const tos = "https://anvil-e2e.com/terms-v1"
	ca := NewCA(t, withLegacy(), WithACME("terms_of_service: "+tos+"\n"))
	c := newV1Client(t, ca, newKey(t), false)
	if meta, _ := c.dir["meta"].(map[string]any); meta["terms-of-service"] != tos {
		t.Fatalf("v1 directory meta %v", c.dir["meta"])
	}
	status, body, h := c.post(c.url("new-reg"), map[string]any{"resource": "new-reg"})
	expectV1Problem(t, status, body, h, http.StatusBadRequest, "malformed")
	if l := linkRel(h, "terms-of-service"); len(l) != 1 || l[0] != tos {
		t.Fatalf("refusal without a terms-of-service link: %v", l)
	}
	status, body, h = c.post(c.url("new-reg"), map[string]any{"resource": "new-reg", "agreement": "https://anvil-e2e.com/old-terms"})
	expectV1Problem(t, status, body, h, http.StatusBadRequest, "malformed")
	status, body, h = c.post(c.url("new-reg"), map[string]any{"resource": "new-reg", "agreement": tos})
	if status != http.StatusCreated || jsonField(t, body, "agreement") != tos {
		t.Fatalf("new-reg with the agreement: %d %s", status, body)
	}
	if l := linkRel(h, "terms-of-service"); len(l) != 1 || l[0] != tos {
		t.Fatalf("new-reg Link terms-of-service = %v", l)
	}
	// The key's registration exists now: without the agreement it is a 409.
	status, _, h = c.post(c.url("new-reg"), map[string]any{"resource": "new-reg"})
	if status != http.StatusConflict || h.Get("Location") == "" {
		t.Fatalf("new-reg again: %d", status)
	}
}
