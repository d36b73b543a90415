package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/anvil-pki/anvil/acme"
)

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
	ids, next, err := s.cfg.Core.ListOrders(r.Context(), req.account, r.URL.Query().Get("cursor"))
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
