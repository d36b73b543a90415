package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/gorilla/mux"

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
	acct, err := s.cfg.CA.KeyChange(r.Context(), req.account, req.accountKey, newKey, body.Account, body.OldKey)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.AccountURL(acct.ID))
	return writeJSON(w, http.StatusOK, s.accountView(acct))
}

// accountOrders lists an account's orders, a page at a time (RFC 8555 7.1.2.1).
func (s *Server) accountOrders(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	if err := req.requirePostAsGet(); err != nil {
		return err
	}
	if mux.Vars(r)["id"] != req.account.ID {
		return acme.Unauthorized("the orders of another account")
	}
	ids, next, err := s.cfg.CA.ListOrders(r.Context(), req.account, r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	out := struct {
		Orders []string `json:"orders"`
	}{Orders: []string{}}
	for _, id := range ids {
		out.Orders = append(out.Orders, s.url(orderPath+id))
	}
	if next != "" {
		w.Header().Add("Link", link(s.AccountURL(req.account.ID)+"/orders?cursor="+next, "next"))
	}
	return writeJSON(w, http.StatusOK, out)
}

// revokeCert revokes a certificate (RFC 8555 7.6), signed by an account (kid)
// or by the certificate's own key (jwk).
func (s *Server) revokeCert(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, eitherKey)
	if err != nil {
		return err
	}
	var body struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if err := req.decodePayload(&body); err != nil {
		return err
	}
	der, err := base64.RawURLEncoding.DecodeString(body.Certificate)
	if err != nil || len(der) == 0 {
		return acme.Malformed("certificate must be the base64url (unpadded) DER of the certificate")
	}
	if err := s.cfg.CA.Revoke(r.Context(), acme.RevokeRequest{CertDER: der, Reason: body.Reason, Account: req.account, JWK: req.jwk}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// newAuthz pre-authorizes an identifier (RFC 8555 7.4.1).
func (s *Server) newAuthz(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	var body struct {
		Identifier acme.Identifier `json:"identifier"`
	}
	if err := req.decodePayload(&body); err != nil {
		return err
	}
	a, err := s.cfg.CA.PreAuthorize(r.Context(), req.account, body.Identifier)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(authzPath+a.ID))
	return writeJSON(w, http.StatusCreated, s.authzView(a))
}

// renewalInfo answers RFC 9773's GET: when to renew a certificate.
func (s *Server) renewalInfo(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, renewalInfoPath)
	info, err := s.cfg.CA.RenewalInfo(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Retry-After", strconvSeconds(info.RetryAfter))
	type window struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	return writeJSON(w, http.StatusOK, struct {
		SuggestedWindow window `json:"suggestedWindow"`
	}{window{info.Start.UTC().Format(time.RFC3339), info.End.UTC().Format(time.RFC3339)}})
}
