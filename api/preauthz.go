package api

import (
	"net/http"

	"github.com/anvil-pki/anvil/acme"
)

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
	a, err := s.cfg.Core.PreAuthorize(r.Context(), req.account, body.Identifier)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(authzPath+a.ID))
	return writeJSON(w, http.StatusCreated, s.authzView(a))
}
