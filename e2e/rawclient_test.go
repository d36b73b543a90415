package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// rawClient speaks ACME by hand, so that tests can send what no real client
// would: it builds every JWS itself and lets a test change any part of it.
type rawClient struct {
	t    *testing.T
	ca   *CA
	http *http.Client
	dir  map[string]any
	key  crypto.Signer // ECDSA P-256
	kid  string
}

func newRawClient(t *testing.T, ca *CA, key crypto.Signer) *rawClient {
	t.Helper()
	c := &rawClient{t: t, ca: ca, http: ca.HTTPClient(), key: key}
	resp, err := c.http.Get(ca.DirURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&c.dir); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawClient) url(name string) string { return c.dir[name].(string) }

func (c *rawClient) nonce() string {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodHead, c.url("newNonce"), nil)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	n := resp.Header.Get("Replay-Nonce")
	if n == "" {
		c.t.Fatal("newNonce gave no Replay-Nonce")
	}
	return n
}

func (c *rawClient) jwk() map[string]any {
	b, err := (&jose.JSONWebKey{Key: c.key.Public()}).MarshalJSON()
	if err != nil {
		c.t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// thumbprint is the key's RFC 7638 thumbprint, for key authorizations.
func (c *rawClient) thumbprint() string {
	tp, err := (&jose.JSONWebKey{Key: c.key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		c.t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// header is the protected header a well-behaved client would send.
func (c *rawClient) header(url string) map[string]any {
	h := map[string]any{"alg": "ES256", "nonce": c.nonce(), "url": url}
	if c.kid != "" {
		h["kid"] = c.kid
	} else {
		h["jwk"] = c.jwk()
	}
	return h
}

// signES256 signs the JWS signing input with the client's P-256 key.
func (c *rawClient) signES256(input string) []byte {
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, c.key.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		c.t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

// jws builds a flattened JWS; payload nil means POST-as-GET.
func (c *rawClient) jws(h map[string]any, payload []byte) []byte {
	hb, _ := json.Marshal(h)
	prot := base64.RawURLEncoding.EncodeToString(hb)
	pl := ""
	if payload != nil {
		pl = base64.RawURLEncoding.EncodeToString(payload)
	}
	sig := c.signES256(prot + "." + pl)
	out, _ := json.Marshal(map[string]string{"protected": prot, "payload": pl, "signature": base64.RawURLEncoding.EncodeToString(sig)})
	return out
}

// send POSTs a body with the ACME content type.
func (c *rawClient) send(url string, body []byte) (int, []byte, http.Header) {
	return c.sendAs(url, body, "application/jose+json")
}

func (c *rawClient) sendAs(url string, body []byte, contentType string) (int, []byte, http.Header) {
	c.t.Helper()
	resp, err := c.http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// post sends a correct JWS of payload to url.
func (c *rawClient) post(url string, payload any) (int, []byte, http.Header) {
	c.t.Helper()
	var pl []byte
	if payload != nil {
		var err error
		if pl, err = json.Marshal(payload); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.send(url, c.jws(c.header(url), pl))
}

func (c *rawClient) postAsGet(url string) (int, []byte) {
	st, b, _ := c.send(url, c.jws(c.header(url), nil))
	return st, b
}

// register makes an account for the client's key and remembers its URL.
func (c *rawClient) register() {
	c.t.Helper()
	st, body, h := c.post(c.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
	if st != http.StatusCreated {
		c.t.Fatalf("newAccount: %d %s", st, body)
	}
	c.kid = h.Get("Location")
}

// readyOrder creates an order for names and answers its http-01 challenges,
// returning the order URL and object once it is ready.
func (c *rawClient) readyOrder(names ...string) (string, map[string]any) {
	c.t.Helper()
	var ids []map[string]string
	for _, n := range names {
		ids = append(ids, map[string]string{"type": "dns", "value": n})
	}
	st, body, h := c.post(c.url("newOrder"), map[string]any{"identifiers": ids})
	if st != http.StatusCreated {
		c.t.Fatalf("newOrder: %d %s", st, body)
	}
	orderURL := h.Get("Location")
	var order map[string]any
	json.Unmarshal(body, &order)
	srv := c.ca.challengeServer(c.t)
	for _, az := range order["authorizations"].([]any) {
		st, body := c.postAsGet(az.(string))
		if st != http.StatusOK {
			c.t.Fatalf("authz: %d %s", st, body)
		}
		var authz struct {
			Challenges []struct{ Type, URL, Token string }
		}
		json.Unmarshal(body, &authz)
		for _, ch := range authz.Challenges {
			if ch.Type != "http-01" {
				continue
			}
			srv.set(ch.Token, ch.Token+"."+c.thumbprint())
			st, body, _ := c.post(ch.URL, map[string]any{})
			if st != http.StatusOK || jsonField(c.t, body, "status") != "valid" {
				c.t.Fatalf("http-01 response: %d %s", st, body)
			}
		}
	}
	st, body = c.postAsGet(orderURL)
	json.Unmarshal(body, &order)
	if order["status"] != "ready" {
		c.t.Fatalf("order not ready: %s", body)
	}
	return orderURL, order
}

func jsonField(t *testing.T, body []byte, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	s, _ := m[field].(string)
	return s
}

// challengeHTTP serves http-01 key authorizations on the port the CA validates.
type challengeHTTP struct {
	mu   sync.Mutex
	keys map[string]string
}

func (s *challengeHTTP) set(token, keyAuth string) {
	s.mu.Lock()
	s.keys[token] = keyAuth
	s.mu.Unlock()
}

// Present and CleanUp make the responder a lego challenge.Provider, so that
// every client of a test shares the one port the CA validates on.
func (s *challengeHTTP) Present(_ context.Context, _, token, keyAuth string) error {
	s.set(token, keyAuth)
	return nil
}

func (s *challengeHTTP) CleanUp(_ context.Context, _, token, _ string) error {
	s.mu.Lock()
	delete(s.keys, token)
	s.mu.Unlock()
	return nil
}

func (s *challengeHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	s.mu.Lock()
	ka, ok := s.keys[token]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, ka)
}

var (
	chalMu      sync.Mutex
	chalServers = map[*CA]*challengeHTTP{}
)

// challengeServer starts (once per CA) an http-01 responder on its HTTPPort.
func (ca *CA) challengeServer(t testing.TB) *challengeHTTP {
	chalMu.Lock()
	defer chalMu.Unlock()
	if s, ok := chalServers[ca]; ok {
		return s
	}
	s := &challengeHTTP{keys: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ca.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	go srv.Serve(l)
	chalServers[ca] = s
	ca.t.Cleanup(func() {
		srv.Close()
		chalMu.Lock()
		delete(chalServers, ca)
		chalMu.Unlock()
	})
	return s
}
