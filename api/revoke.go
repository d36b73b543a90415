package api

import (
	"encoding/base64"
	"net/http"

	"github.com/anvil-pki/anvil/acme"
)

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
	if err := s.cfg.Core.Revoke(r.Context(), acme.RevokeRequest{CertDER: der, Reason: body.Reason, Account: req.account, JWK: req.jwk}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
