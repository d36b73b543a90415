package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// problemOf decodes a problem document and checks its type and status.
func expectProblem(t *testing.T, status int, body []byte, h http.Header, wantStatus int, wantType string) {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("status %d, body is not a problem document: %s", status, body)
	}
	if status != wantStatus || p.Type != "urn:ietf:params:acme:error:"+wantType {
		t.Fatalf("got %d %s (%s), want %d %s", status, p.Type, p.Detail, wantStatus, wantType)
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("problem with Content-Type %q", ct)
	}
	if h.Get("Replay-Nonce") == "" {
		t.Fatal("error response without a Replay-Nonce")
	}
	t.Logf("%d %s: %s", status, wantType, p.Detail)
}

// Hostile requests each get their RFC 8555 problem type, and nothing else.
func TestHostileRequests(t *testing.T) {
	ca := NewCA(t)
	a := newRawClient(t, ca, newKey(t))
	a.register()
	newOrder := a.url("newOrder")
	orderPayload := []byte(`{"identifiers":[{"type":"dns","value":"h.anvil-e2e.com"}]}`)

	t.Run("newNonce", func(t *testing.T) {
		// RFC 8555 7.2: HEAD answers 200, GET 204, each with a fresh nonce
		// that no cache may keep.
		seen := map[string]bool{}
		for method, want := range map[string]int{http.MethodHead: http.StatusOK, http.MethodGet: http.StatusNoContent} {
			req, _ := http.NewRequest(method, a.url("newNonce"), nil)
			resp, err := ca.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			nonce := resp.Header.Get("Replay-Nonce")
			if resp.StatusCode != want || nonce == "" || seen[nonce] || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s newNonce: %d, nonce %q, Cache-Control %q; want %d, a fresh nonce, no-store",
					method, resp.StatusCode, nonce, resp.Header.Get("Cache-Control"), want)
			}
			seen[nonce] = true
		}
	})
	t.Run("replayed nonce", func(t *testing.T) {
		h := a.header(newOrder)
		st, body, _ := a.send(newOrder, a.jws(h, orderPayload))
		if st != http.StatusCreated {
			t.Fatalf("first use: %d %s", st, body)
		}
		st, body, hdr := a.send(newOrder, a.jws(h, orderPayload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "badNonce")
	})
	t.Run("made-up nonce", func(t *testing.T) {
		h := a.header(newOrder)
		h["nonce"] = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		st, body, hdr := a.send(newOrder, a.jws(h, orderPayload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "badNonce")
	})
	t.Run("wrong url", func(t *testing.T) {
		h := a.header(newOrder)
		h["url"] = a.url("newAccount")
		st, body, hdr := a.send(newOrder, a.jws(h, orderPayload))
		expectProblem(t, st, body, hdr, http.StatusForbidden, "unauthorized")
	})
	t.Run("alg none", func(t *testing.T) {
		h := a.header(newOrder)
		h["alg"] = "none"
		hb, _ := json.Marshal(h)
		body, _ := json.Marshal(map[string]string{
			"protected": base64.RawURLEncoding.EncodeToString(hb),
			"payload":   base64.RawURLEncoding.EncodeToString(orderPayload),
			"signature": "",
		})
		st, resp, hdr := a.send(newOrder, body)
		expectProblem(t, st, resp, hdr, http.StatusBadRequest, "badSignatureAlgorithm")
		if !strings.Contains(string(resp), `"algorithms"`) {
			t.Errorf("badSignatureAlgorithm without the algorithms list: %s", resp)
		}
	})
	t.Run("HS256", func(t *testing.T) {
		h := a.header(newOrder)
		h["alg"] = "HS256"
		hb, _ := json.Marshal(h)
		prot := base64.RawURLEncoding.EncodeToString(hb)
		pl := base64.RawURLEncoding.EncodeToString(orderPayload)
		mac := hmac.New(sha256.New, []byte("a shared secret nobody should accept"))
		mac.Write([]byte(prot + "." + pl))
		body, _ := json.Marshal(map[string]string{"protected": prot, "payload": pl, "signature": base64.RawURLEncoding.EncodeToString(mac.Sum(nil))})
		st, resp, hdr := a.send(newOrder, body)
		expectProblem(t, st, resp, hdr, http.StatusBadRequest, "badSignatureAlgorithm")
	})
	t.Run("both jwk and kid", func(t *testing.T) {
		h := a.header(newOrder)
		h["jwk"] = a.jwk()
		st, body, hdr := a.send(newOrder, a.jws(h, orderPayload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "malformed")
	})
	t.Run("unsigned POST", func(t *testing.T) {
		st, body, hdr := a.send(newOrder, orderPayload)
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "malformed")
		st, body, hdr = a.sendAs(newOrder, orderPayload, "application/json")
		expectProblem(t, st, body, hdr, http.StatusUnsupportedMediaType, "malformed")
	})
	t.Run("unprotected header", func(t *testing.T) {
		var jws map[string]any
		json.Unmarshal(a.jws(a.header(newOrder), orderPayload), &jws)
		jws["header"] = map[string]any{"kid": a.kid}
		body, _ := json.Marshal(jws)
		st, resp, hdr := a.send(newOrder, body)
		expectProblem(t, st, resp, hdr, http.StatusBadRequest, "malformed")
	})
	t.Run("bad signature", func(t *testing.T) {
		var jws map[string]string
		json.Unmarshal(a.jws(a.header(newOrder), orderPayload), &jws)
		sig, _ := base64.RawURLEncoding.DecodeString(jws["signature"])
		sig[10] ^= 1
		jws["signature"] = base64.RawURLEncoding.EncodeToString(sig)
		body, _ := json.Marshal(jws)
		st, resp, hdr := a.send(newOrder, body)
		expectProblem(t, st, resp, hdr, http.StatusBadRequest, "malformed")
	})
	t.Run("dot inside a member", func(t *testing.T) {
		// Members are joined into the compact form for go-jose: a "." inside
		// one must not shift what counts as payload and signature.
		var jws map[string]string
		json.Unmarshal(a.jws(a.header(newOrder), orderPayload), &jws)
		for _, member := range []string{"payload", "signature"} {
			bad := map[string]string{"protected": jws["protected"], "payload": jws["payload"], "signature": jws["signature"]}
			bad[member] += ".e30"
			body, _ := json.Marshal(bad)
			st, resp, hdr := a.send(newOrder, body)
			expectProblem(t, st, resp, hdr, http.StatusBadRequest, "malformed")
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		big := make([]byte, 100<<10)
		rand.Read(big)
		payload, _ := json.Marshal(map[string]any{"identifiers": []any{}, "padding": base64.RawURLEncoding.EncodeToString(big)})
		st, body, hdr := a.send(newOrder, a.jws(a.header(newOrder), payload))
		expectProblem(t, st, body, hdr, http.StatusRequestEntityTooLarge, "malformed")
	})
	t.Run("duplicate JSON key", func(t *testing.T) {
		payload := []byte(`{"identifiers":[{"type":"dns","value":"a.anvil-e2e.com"}],"identifiers":[{"type":"dns","value":"b.anvil-e2e.com"}]}`)
		st, body, hdr := a.send(newOrder, a.jws(a.header(newOrder), payload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "malformed")
	})
	t.Run("unknown account", func(t *testing.T) {
		h := a.header(newOrder)
		h["kid"] = ca.BaseURL + "/acme/acct/nosuchaccount"
		st, body, hdr := a.send(newOrder, a.jws(h, orderPayload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "accountDoesNotExist")
	})

	orderURL, order := a.readyOrder("fin.anvil-e2e.com")
	finalize := order["finalize"].(string)
	certKey := newKey(t)
	csrFor := func(key any, names ...string) map[string]string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"csr": base64.RawURLEncoding.EncodeToString(der)}
	}
	t.Run("finalize with a name not in the order", func(t *testing.T) {
		st, body, hdr := a.post(finalize, csrFor(certKey, "fin.anvil-e2e.com", "evil.anvil-e2e.com"))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "badCSR")
	})
	t.Run("CSR reusing the account key", func(t *testing.T) {
		st, body, hdr := a.post(finalize, csrFor(a.key, "fin.anvil-e2e.com"))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "badCSR")
	})
	b := newRawClient(t, ca, newKey(t))
	b.register()
	t.Run("another account's order", func(t *testing.T) {
		st, body, hdr := b.send(orderURL, b.jws(b.header(orderURL), nil))
		expectProblem(t, st, body, hdr, http.StatusForbidden, "unauthorized")
		st, body, hdr = b.post(finalize, csrFor(certKey, "fin.anvil-e2e.com"))
		expectProblem(t, st, body, hdr, http.StatusForbidden, "unauthorized")
	})
	t.Run("the refused finalizes left the order ready", func(t *testing.T) {
		st, body := a.postAsGet(orderURL)
		if st != http.StatusOK || jsonField(t, body, "status") != "ready" {
			t.Fatalf("order: %d %s", st, body)
		}
		st, body, _ = a.post(finalize, csrFor(certKey, "fin.anvil-e2e.com"))
		if st != http.StatusOK || jsonField(t, body, "status") != "valid" {
			t.Fatalf("a correct finalize after the refused ones: %d %s", st, body)
		}
		st, body, hdr := a.post(finalize, csrFor(certKey, "fin.anvil-e2e.com"))
		expectProblem(t, st, body, hdr, http.StatusForbidden, "orderNotReady")
	})
}
