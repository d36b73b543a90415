package api

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
)

type accountView struct {
	Status               string   `json:"status"`
	Contact              []string `json:"contact,omitempty"`
	TermsOfServiceAgreed bool     `json:"termsOfServiceAgreed,omitempty"`
	Orders               string   `json:"orders"`
}

func (s *Server) accountView(a *storage.Account) accountView {
	return accountView{Status: a.Status, Contact: a.Contact, TermsOfServiceAgreed: a.TermsAgreed, Orders: s.AccountURL(a.ID) + "/orders"}
}

type orderView struct {
	Status         string            `json:"status"`
	Expires        string            `json:"expires"`
	Identifiers    []acme.Identifier `json:"identifiers"`
	Authorizations []string          `json:"authorizations"`
	Finalize       string            `json:"finalize"`
	Certificate    string            `json:"certificate,omitempty"`
	Error          json.RawMessage   `json:"error,omitempty"`
	Profile        string            `json:"profile,omitempty"`
	Replaces       string            `json:"replaces,omitempty"`
}

func (s *Server) orderView(o *storage.Order) orderView {
	v := orderView{
		Status:      o.Status,
		Expires:     o.Expires.UTC().Format(time.RFC3339),
		Identifiers: o.Identifiers,
		Finalize:    s.url(orderPath + o.ID + "/finalize"),
		Error:       storedProblem(o.Error),
		Profile:     o.Profile,
		Replaces:    o.Replaces,
	}
	for _, id := range o.AuthzIDs {
		v.Authorizations = append(v.Authorizations, s.url(authzPath+id))
	}
	if o.CertSerial != "" {
		v.Certificate = s.url(certPath + o.CertSerial)
	}
	return v
}

type challengeView struct {
	Type      string          `json:"type"`
	URL       string          `json:"url"`
	Status    string          `json:"status"`
	Token     string          `json:"token"`
	Validated string          `json:"validated,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
}

func (s *Server) challengeView(c *storage.Challenge) challengeView {
	v := challengeView{Type: c.Type, URL: s.url(challengePath + c.ID), Status: c.Status, Token: c.Token, Error: storedProblem(c.Error)}
	if !c.Validated.IsZero() {
		v.Validated = c.Validated.UTC().Format(time.RFC3339)
	}
	return v
}

type authzView struct {
	Identifier acme.Identifier `json:"identifier"`
	Status     string          `json:"status"`
	Expires    string          `json:"expires,omitempty"`
	Challenges []challengeView `json:"challenges"`
	Wildcard   bool            `json:"wildcard,omitempty"`
}

func (s *Server) authzView(a *storage.Authorization) authzView {
	v := authzView{Identifier: a.Identifier, Status: a.Status, Expires: a.Expires.UTC().Format(time.RFC3339), Wildcard: a.Wildcard, Challenges: []challengeView{}}
	for _, c := range a.Challenges {
		// A valid authorization shows only the challenge that validated it.
		if a.Status == acme.StatusValid && c.Status != acme.StatusValid {
			continue
		}
		v.Challenges = append(v.Challenges, s.challengeView(c))
	}
	return v
}

// newAccount creates or finds an account (RFC 8555 7.3).
func (s *Server) newAccount(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needJWK)
	if err != nil {
		return err
	}
	var body acme.NewAccountRequest
	if err := req.decodePayload(&body); err != nil {
		return err
	}
	acct, created, err := s.cfg.Core.NewAccount(r.Context(), req.jwk, body, remoteIP(r), s.url(newAccountPath))
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.AccountURL(acct.ID))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, s.accountView(acct))
}

// account fetches (POST-as-GET), updates or deactivates an account.
func (s *Server) account(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	if mux.Vars(r)["id"] != req.account.ID {
		return acme.Unauthorized("the request is signed by another account")
	}
	acct := req.account
	if !req.postAsGet {
		var body acme.UpdateAccountRequest
		if err := req.decodePayload(&body); err != nil {
			return err
		}
		if acct, err = s.cfg.Core.UpdateAccount(r.Context(), acct, body); err != nil {
			return err
		}
	}
	w.Header().Set("Location", s.AccountURL(acct.ID))
	return writeJSON(w, http.StatusOK, s.accountView(acct))
}

// newOrder creates an order (RFC 8555 7.4).
func (s *Server) newOrder(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	var body acme.NewOrderRequest
	if err := req.decodePayload(&body); err != nil {
		return err
	}
	o, err := s.cfg.Core.NewOrder(r.Context(), req.account, body)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(orderPath+o.ID))
	return writeJSON(w, http.StatusCreated, s.orderView(o))
}

// order fetches an order (POST-as-GET).
func (s *Server) order(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	if err := req.requirePostAsGet(); err != nil {
		return err
	}
	o, err := s.cfg.Core.Order(r.Context(), req.account, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	s.retryAfterIf(w, o.Status == acme.StatusProcessing)
	return writeJSON(w, http.StatusOK, s.orderView(o))
}

// finalize submits the CSR of a ready order.
func (s *Server) finalize(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	var body struct {
		CSR string `json:"csr"`
	}
	if err := req.decodePayload(&body); err != nil {
		return err
	}
	der, err := base64.RawURLEncoding.DecodeString(body.CSR)
	if err != nil || len(der) == 0 {
		return acme.BadCSR("csr must be the base64url (unpadded) DER encoding of a CSR")
	}
	o, err := s.cfg.Core.Finalize(r.Context(), req.account, req.accountKey, mux.Vars(r)["id"], der)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(orderPath+o.ID))
	s.retryAfterIf(w, o.Status == acme.StatusProcessing)
	return writeJSON(w, http.StatusOK, s.orderView(o))
}

// authorization fetches (POST-as-GET) or deactivates an authorization.
func (s *Server) authorization(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	var a *storage.Authorization
	if req.postAsGet {
		a, err = s.cfg.Core.Authorization(r.Context(), req.account, id)
	} else {
		var body struct {
			Status string `json:"status"`
		}
		if err := req.decodePayload(&body); err != nil {
			return err
		}
		if body.Status != acme.StatusDeactivated {
			return acme.Malformed("an authorization can only be updated to status deactivated")
		}
		a, err = s.cfg.Core.DeactivateAuthorization(r.Context(), req.account, id)
	}
	if err != nil {
		return err
	}
	s.retryAfterIf(w, a.Status == acme.StatusPending && anyProcessing(a))
	return writeJSON(w, http.StatusOK, s.authzView(a))
}

func anyProcessing(a *storage.Authorization) bool {
	for _, c := range a.Challenges {
		if c.Status == acme.StatusProcessing {
			return true
		}
	}
	return false
}

// challenge fetches a challenge (POST-as-GET) or, with a JSON payload ({}),
// asks for its validation.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	var ch *storage.Challenge
	var authz *storage.Authorization
	if req.postAsGet {
		ch, authz, err = s.cfg.Core.Challenge(r.Context(), req.account, id)
	} else {
		var body struct{}
		if err := req.decodePayload(&body); err != nil {
			return err
		}
		ch, authz, err = s.cfg.Core.RespondChallenge(r.Context(), req.account, id)
	}
	if err != nil {
		return err
	}
	w.Header().Add("Link", link(s.url(authzPath+authz.ID), "up"))
	s.retryAfterIf(w, ch.Status == acme.StatusProcessing)
	return writeJSON(w, http.StatusOK, s.challengeView(ch))
}

func (s *Server) retryAfterIf(w http.ResponseWriter, cond bool) {
	if cond {
		w.Header().Set("Retry-After", strconvSeconds(s.cfg.RetryAfter))
	}
}

// certificate serves a certificate chain (POST-as-GET); /acme/cert/{serial}/{n}
// serves alternate chain n.
func (s *Server) certificate(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verifyPOST(r, needKID)
	if err != nil {
		return err
	}
	if err := req.requirePostAsGet(); err != nil {
		return err
	}
	return s.writeChain(w, r)
}

func (s *Server) writeChain(w http.ResponseWriter, r *http.Request) error {
	serial := mux.Vars(r)["serial"]
	der, chains, err := s.cfg.Core.Certificate(r.Context(), serial)
	if err != nil {
		return err
	}
	which := 0
	if alt := mux.Vars(r)["alt"]; alt != "" {
		n, err := strconv.Atoi(alt)
		if err != nil || n < 1 || n >= len(chains) {
			return acme.NotFound("no alternate chain %s", alt)
		}
		which = n
	}
	for i := range chains {
		if i == which {
			continue
		}
		u := s.url(certPath + serial)
		if i > 0 {
			u += "/" + strconv.Itoa(i)
		}
		w.Header().Add("Link", link(u, "alternate"))
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, c := range chains[which] {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(out)
	return err
}
