package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Requests RFC 8555 section 6 forbids are refused with the right problem,
// against the built binary: a detached payload, a Replay-Nonce request
// header, a GET of a POST-only resource, and a second answer to an invalid
// challenge.
func TestHostileRequestRules(t *testing.T) {
	ca := NewCA(t)
	a := newRawClient(t, ca, newKey(t))
	a.register()
	newOrder := a.url("newOrder")
	orderPayload := []byte(`{"identifiers":[{"type":"dns","value":"rules.anvil-e2e.com"}]}`)

	t.Run("JWS without a payload member", func(t *testing.T) {
		// Correctly signed over an empty payload (what POST-as-GET signs),
		// but the member is missing: a detached payload, RFC 7515 Appendix F.
		var m map[string]string
		json.Unmarshal(a.jws(a.header(a.kid), nil), &m)
		delete(m, "payload")
		body, _ := json.Marshal(m)
		st, resp, hdr := a.send(a.kid, body)
		expectProblem(t, st, resp, hdr, http.StatusBadRequest, "malformed")
		if !strings.Contains(string(resp), "payload") {
			t.Errorf("detail does not name the payload: %s", resp)
		}
		// The same request with "payload": "" is a good POST-as-GET.
		if st, resp := a.postAsGet(a.kid); st != http.StatusOK {
			t.Errorf("POST-as-GET of the account: %d %s", st, resp)
		}
	})

	t.Run("Replay-Nonce request header", func(t *testing.T) {
		// A request that is right in every other way: its nonce is fresh and
		// in the protected header, and a second fresh nonce rides in the
		// header where no nonce belongs.
		req, _ := http.NewRequest(http.MethodPost, newOrder, strings.NewReader(string(a.jws(a.header(newOrder), orderPayload))))
		req.Header.Set("Content-Type", "application/jose+json")
		req.Header.Set("Replay-Nonce", a.nonce())
		resp, err := a.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body json.RawMessage
		json.NewDecoder(resp.Body).Decode(&body)
		expectProblem(t, resp.StatusCode, body, resp.Header, http.StatusBadRequest, "malformed")
		if !strings.Contains(string(body), "Replay-Nonce") {
			t.Errorf("detail does not name the header: %s", body)
		}
	})

	t.Run("GET of POST-only resources", func(t *testing.T) {
		orderURL, order := a.readyOrder("get.anvil-e2e.com")
		var o acmeOrder
		b, _ := json.Marshal(order)
		json.Unmarshal(b, &o)
		// The certificate URL of a real certificate, from a finalized order.
		st, fin, _ := a.post(o.Finalize, csrFor(t, "get.anvil-e2e.com"))
		if st != http.StatusOK {
			t.Fatalf("finalize: %d %s", st, fin)
		}
		certURL := jsonField(t, fin, "certificate")
		st, authzBody := a.postAsGet(o.Authorizations[0])
		if st != http.StatusOK {
			t.Fatalf("authz: %d %s", st, authzBody)
		}
		var az struct{ Challenges []struct{ URL string } }
		json.Unmarshal(authzBody, &az)
		for name, url := range map[string]string{
			"account": a.kid, "orders list": a.kid + "/orders", "order": orderURL, "finalize": o.Finalize,
			"authorization": o.Authorizations[0], "challenge": az.Challenges[0].URL, "certificate": certURL,
			"newAccount": a.url("newAccount"), "newOrder": newOrder, "revokeCert": a.url("revokeCert"), "keyChange": a.url("keyChange"),
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				req, _ := http.NewRequest(method, url, nil)
				resp, err := a.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body struct{ Type string }
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
					t.Errorf("%s %s: %d, Allow %q; want 405 with Allow: POST", method, name, resp.StatusCode, resp.Header.Get("Allow"))
				}
				if method == http.MethodGet && (body.Type != "urn:ietf:params:acme:error:malformed" || resp.Header.Get("Content-Type") != "application/problem+json") {
					t.Errorf("GET %s: problem %q (%s), want malformed", name, body.Type, resp.Header.Get("Content-Type"))
				}
			}
		}
		// The directory and newNonce keep GET (RFC 8555 6.3).
		for _, url := range []string{ca.DirURL, a.url("newNonce")} {
			resp, err := a.http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
				t.Errorf("GET %s: %d", url, resp.StatusCode)
			}
		}
	})

	t.Run("invalid challenge stays invalid", func(t *testing.T) {
		srv := ca.challengeServer(t)
		st, body, h := a.post(newOrder, map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "final.anvil-e2e.com"}}})
		if st != http.StatusCreated {
			t.Fatalf("newOrder: %d %s", st, body)
		}
		orderURL := h.Get("Location")
		var o acmeOrder
		json.Unmarshal(body, &o)
		st, authzBody := a.postAsGet(o.Authorizations[0])
		var az struct {
			Challenges []struct{ Type, URL, Token string }
		}
		json.Unmarshal(authzBody, &az)
		var chURL, token string
		for _, c := range az.Challenges {
			if c.Type == "http-01" {
				chURL, token = c.URL, c.Token
			}
		}
		if st != http.StatusOK || chURL == "" {
			t.Fatalf("authz: %d %s", st, authzBody)
		}
		// Nothing is served for the token: the validation fails.
		st, body, _ = a.post(chURL, map[string]any{})
		if st != http.StatusOK || jsonField(t, body, "status") != "invalid" {
			t.Fatalf("first answer: %d %s, want the challenge invalid", st, body)
		}
		// Now the right key authorization is there, and every challenge of
		// the authorization is answered again: each is refused.
		srv.set(token, token+"."+a.thumbprint())
		for _, c := range az.Challenges {
			st, body, hdr := a.post(c.URL, map[string]any{})
			expectProblem(t, st, body, hdr, http.StatusBadRequest, "malformed")
		}
		// And nothing became valid.
		st, body = a.postAsGet(chURL)
		if st != http.StatusOK || jsonField(t, body, "status") != "invalid" {
			t.Errorf("challenge after a second answer: %d %s", st, body)
		}
		st, authzBody = a.postAsGet(o.Authorizations[0])
		if jsonField(t, authzBody, "status") != "invalid" || strings.Contains(string(authzBody), `"valid"`) {
			t.Errorf("authorization after a second answer: %s", authzBody)
		}
		st, body = a.postAsGet(orderURL)
		if jsonField(t, body, "status") != "invalid" {
			t.Errorf("order after a second answer: %s", body)
		}
	})

	t.Run("special-use and IDN identifiers", func(t *testing.T) {
		for name, label := range map[string]string{
			"evil.example":                `"example"`,
			"a.other-ca.example":          `"example"`,
			"www.example.com":             `"example.com"`,
			"printer.local":               `"local"`,
			"x.onion":                     `"onion"`,
			"router.home.arpa":            `"home.arpa"`,
			"db.internal":                 `"internal"`,
			"h.test":                      `"test"`,
			"xn--ls8h.anvil-e2e.com":      `"xn--ls8h"`,      // an emoji
			"xn--bcher-2pa.anvil-e2e.com": `"xn--bcher-2pa"`, // bÜcher, upper case inside
			"XN--EX-8TB.anvil-e2e.com":    `"xn--ex-8tb"`,    // not NFC
			"xn--zzzzzzzzz.anvil-e2e.com": `"xn--zzzzzzzzz"`, // not Punycode
		} {
			st, body, _ := a.post(newOrder, map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": name}}})
			var p struct{ Type, Detail string }
			json.Unmarshal(body, &p)
			if st != http.StatusBadRequest || p.Type != "urn:ietf:params:acme:error:rejectedIdentifier" || !strings.Contains(p.Detail, label) {
				t.Errorf("%s: %d %s; want 400 rejectedIdentifier naming %s", name, st, body, label)
			}
		}
		// What the harness allows (localhost) and a valid A-label are ordered.
		for _, name := range []string{"h.anvil.localhost", "xn--bcher-kva.anvil-e2e.com"} {
			st, body, _ := a.post(newOrder, map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": name}}})
			if st != http.StatusCreated {
				t.Errorf("%s: %d %s", name, st, body)
			}
		}
	})
}

// A restart of `anvil serve` on SQLite forgets its nonces. The client's next
// request gets badNonce with Boulder's wording, which acme.sh 3.x looks for
// before it retries, and a fresh nonce; the retry with it succeeds.
func TestBadNonceAcrossRestart(t *testing.T) {
	ca := NewCA(t)
	a := newRawClient(t, ca, newKey(t))
	a.register()
	newOrder := a.url("newOrder")
	payload := []byte(`{"identifiers":[{"type":"dns","value":"restart.anvil-e2e.com"}]}`)

	h := a.header(newOrder) // a nonce from the server before its restart
	ca.Stop()
	ca.Start()
	a.http.CloseIdleConnections()

	st, body, hdr := a.send(newOrder, a.jws(h, payload))
	expectProblem(t, st, body, hdr, http.StatusBadRequest, "badNonce")
	detail := jsonField(t, body, "detail")
	if !strings.HasPrefix(detail, "JWS has an invalid anti-replay nonce") {
		t.Fatalf("badNonce detail %q does not begin with \"JWS has an invalid anti-replay nonce\"", detail)
	}
	// The retry acme.sh makes: the same request with the nonce of the error.
	h["nonce"] = hdr.Get("Replay-Nonce")
	st, body, _ = a.send(newOrder, a.jws(h, payload))
	if st != http.StatusCreated {
		t.Fatalf("retry with the fresh nonce: %d %s", st, body)
	}
	// Every other refused nonce speaks the same words.
	h["nonce"] = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%032d", 0)))
	st, body, hdr = a.send(newOrder, a.jws(h, payload))
	expectProblem(t, st, body, hdr, http.StatusBadRequest, "badNonce")
	if d := jsonField(t, body, "detail"); !strings.HasPrefix(d, "JWS has an invalid anti-replay nonce") {
		t.Errorf("made-up nonce: detail %q", d)
	}
}
