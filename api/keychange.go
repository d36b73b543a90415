package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
)

// keyChange rolls an account over to a new key (RFC 8555 7.3.5). The outer JWS
// is checked as any other (signed by the current key, with kid); the inner one,
// its payload, must be signed by the new key carried in its jwk, name the same
// url, and carry no nonce.
func (s *Server) keyChange(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	if req.postAsGet {
		return acme.Malformed("keyChange needs an inner JWS as payload")
	}
	inner, err := parseFlattened(req.payload)
	if err != nil {
		return err
	}
	hb, err := base64.RawURLEncoding.DecodeString(inner.Protected)
	if err != nil {
		return acme.Malformed("inner JWS: protected header is not base64url")
	}
	var h protectedHeader
	if err := decodeStrict(hb, &h); err != nil {
		return acme.Malformed("inner JWS: protected header: %v", err)
	}
	switch {
	case !slices.Contains(allowedAlgs, h.Alg):
		return acme.BadSignatureAlgorithm(allowedAlgs, "inner JWS algorithm %q is not allowed", h.Alg)
	case len(h.JWK) == 0 || h.KID != "":
		return acme.Malformed("the inner JWS must carry the new key in jwk, and no kid")
	case h.Nonce != "":
		return acme.Malformed("the inner JWS must not have a nonce")
	case h.URL != s.url(keyChangePath):
		return acme.Malformed("the inner JWS url %q is not the keyChange URL", truncate(h.URL, 200))
	case h.B64 != nil || len(h.Crit) > 0:
		return acme.Malformed("the b64 and crit header parameters are not allowed")
	}
	newKey := new(jose.JSONWebKey)
	if err := newKey.UnmarshalJSON(h.JWK); err != nil || !newKey.IsPublic() {
		return acme.BadPublicKey("inner JWS jwk is not a public key")
	}
	if err := algMatchesKey(h.Alg, newKey); err != nil {
		return err
	}
	parsed, err := jose.ParseSignedJSON(string(req.payload), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return acme.Malformed("inner JWS does not parse: %v", err)
	}
	payload, err := parsed.Verify(newKey)
	if err != nil {
		return acme.Malformed("inner JWS signature is invalid")
	}
	var body struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err := decodeStrict(payload, &body); err != nil {
		return acme.Malformed("inner payload: %v", err)
	}
	acct, err := s.cfg.Core.KeyChange(r.Context(), req.account, req.accountKey, newKey, body.Account, body.OldKey)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.AccountURL(acct.ID))
	return writeJSON(w, http.StatusOK, s.accountView(acct))
}
