package legacy

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
	"github.com/anvil-pki/anvil/storage"
)

// signed is a v1 POST whose JWS passed every check.
type signed struct {
	payload []byte
	jwk     *jose.JSONWebKey
}

// jwsHeader is the protected header, or the unprotected "header" member, of
// a v1 JWS.
type jwsHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   *string         `json:"url"`
	JWK   json.RawMessage `json:"jwk"`
	KID   string          `json:"kid"`
	B64   *bool           `json:"b64"`
	Crit  []string        `json:"crit"`
}

// verify checks a v1 POST. What ACME v1 clients send and the RFC 8555 front
// end refuses is accepted, and nothing more:
//   - alg and jwk may sit in the unprotected "header" member (acme-client 1.x
//     and certbot 0.x put them in both); when both places hold one, they
//     must agree;
//   - there need not be a url header, but one that is present must be the
//     request URL;
//   - any Content-Type.
//
// What stays strict: flattened JSON only (one signature), strict JSON in the
// body, the protected header and the payload; the nonce in the protected
// header, redeemed once; the algorithm allow-list matching the key; the
// signature over the protected header and the payload; no b64/crit; a JSON
// payload (v1 has no POST-as-GET).
func (s *Server) verify(r *http.Request) (*signed, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, acme.Malformed("reading the request body: %v", err)
	}
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		return nil, api.WithStatus(http.StatusRequestEntityTooLarge, acme.Malformed("request body is larger than %d bytes", s.cfg.MaxBodyBytes))
	}
	var members map[string]json.RawMessage
	if err := api.DecodeStrict(body, &members); err != nil {
		return nil, acme.Malformed("request body is not a JWS: %v", err)
	}
	var protected, payload, signature string
	var unprotected *jwsHeader
	for k, v := range members {
		var dst *string
		switch k {
		case "protected":
			dst = &protected
		case "payload":
			dst = &payload
		case "signature":
			dst = &signature
		case "header":
			unprotected = new(jwsHeader)
			if err := api.DecodeStrict(v, unprotected); err != nil {
				return nil, acme.Malformed("JWS header member: %v", err)
			}
			continue
		default:
			return nil, acme.Malformed("JWS member %q is not allowed: use the flattened JSON serialization with one signature", k)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, acme.Malformed("JWS member %q must be a string", k)
		}
	}
	if protected == "" {
		return nil, acme.Malformed("JWS lacks a protected header: the nonce must be signed")
	}
	if payload == "" {
		return nil, acme.Malformed("JWS lacks a payload")
	}
	if signature == "" {
		return nil, acme.Malformed("JWS lacks a signature")
	}
	headerJSON, err := base64.RawURLEncoding.DecodeString(protected)
	if err != nil {
		return nil, acme.Malformed("protected header is not base64url: %v", err)
	}
	var h jwsHeader
	if err := api.DecodeStrict(headerJSON, &h); err != nil {
		return nil, acme.Malformed("protected header: %v", err)
	}
	if h.B64 != nil || len(h.Crit) > 0 {
		return nil, acme.Malformed("the b64 and crit header parameters are not allowed")
	}
	if h.KID != "" {
		return nil, acme.Malformed("ACME v1 requests carry the account key as jwk, not a kid")
	}
	if h.URL != nil {
		if want := s.cfg.BaseURL + r.URL.RequestURI(); *h.URL != want {
			return nil, acme.Unauthorized("the JWS url %q is not the request URL %q", truncate(*h.URL, 200), want)
		}
	}
	alg, rawJWK := h.Alg, h.JWK
	if unprotected != nil {
		u := unprotected
		// Only what identifies the key may go unprotected: the nonce, the
		// url and the rest must be signed.
		if u.Nonce != "" || u.URL != nil || u.KID != "" || u.B64 != nil || len(u.Crit) > 0 {
			return nil, acme.Malformed("only alg and jwk may be in the unprotected header; nonce and url must be protected")
		}
		if u.Alg != "" {
			if alg != "" && alg != u.Alg {
				return nil, acme.Malformed("the protected and unprotected headers name different algorithms")
			}
			alg = u.Alg
		}
		if len(u.JWK) > 0 && string(u.JWK) != "null" {
			if len(rawJWK) > 0 && string(rawJWK) != "null" && !sameKey(rawJWK, u.JWK) {
				return nil, acme.Malformed("the protected and unprotected headers carry different keys")
			}
			if len(rawJWK) == 0 || string(rawJWK) == "null" {
				rawJWK = u.JWK
			}
		}
	}
	if len(rawJWK) == 0 || string(rawJWK) == "null" {
		return nil, acme.Malformed("the JWS carries no jwk: ACME v1 requests are signed with the account key in the header")
	}
	key := new(jose.JSONWebKey)
	if err := key.UnmarshalJSON(rawJWK); err != nil {
		return nil, acme.BadPublicKey("jwk: %v", err)
	}
	if !key.IsPublic() {
		return nil, acme.BadPublicKey("jwk must be a public key")
	}
	if err := api.CheckAlgorithm(alg, key); err != nil {
		return nil, err
	}
	// The signature covers the protected header and the payload only. When
	// alg is unprotected, go-jose learns it from an unprotected header that
	// holds nothing else; otherwise the compact form, which has none.
	var parsed *jose.JSONWebSignature
	algs := []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}
	if h.Alg != "" {
		parsed, err = jose.ParseSigned(protected+"."+payload+"."+signature, algs)
	} else {
		b, _ := json.Marshal(map[string]any{"protected": protected, "header": map[string]string{"alg": alg}, "payload": payload, "signature": signature})
		parsed, err = jose.ParseSigned(string(b), algs)
	}
	if err != nil {
		return nil, acme.Malformed("JWS does not parse: %v", err)
	}
	out, err := parsed.Verify(key)
	if err != nil {
		return nil, acme.Malformed("JWS signature is invalid")
	}
	if err := s.cfg.Nonces.Redeem(r.Context(), h.Nonce); err != nil {
		return nil, err
	}
	return &signed{payload: out, jwk: key}, nil
}

// sameKey says whether two JWKs are the same key (their thumbprints agree).
func sameKey(a, b json.RawMessage) bool {
	var ka, kb jose.JSONWebKey
	if ka.UnmarshalJSON(a) != nil || kb.UnmarshalJSON(b) != nil {
		return false
	}
	ta, err1 := ka.Thumbprint(crypto.SHA256)
	tb, err2 := kb.Thumbprint(crypto.SHA256)
	return err1 == nil && err2 == nil && bytes.Equal(ta, tb)
}

// decode decodes the payload strictly into v and checks its "resource"
// member, which v1 requires to name the endpoint: a request signed for one
// resource cannot be replayed at another.
func (req *signed) decode(v interface{ resource() string }, want string) error {
	if err := api.DecodeStrict(req.payload, v); err != nil {
		return acme.Malformed("payload: %v", err)
	}
	if got := v.resource(); got != want {
		return acme.Malformed("the payload's resource is %q; this endpoint takes %q", truncate(got, 64), want)
	}
	return nil
}

// account is the valid account of the signing key.
func (s *Server) account(r *http.Request, req *signed) (*storage.Account, error) {
	keyID, err := acme.KeyID(req.jwk)
	if err != nil {
		return nil, acme.BadPublicKey("cannot compute the key's thumbprint: %v", err)
	}
	acct, err := s.cfg.Core.AccountByKeyID(r.Context(), keyID)
	if err != nil {
		return nil, err
	}
	if acct.Status != acme.StatusValid {
		return nil, acme.Unauthorized("the account of this key is %s", acct.Status)
	}
	return acct, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
