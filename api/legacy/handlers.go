package legacy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
	"github.com/anvil-pki/anvil/storage"
)

// Payloads. Each names its resource, which must match the endpoint.
type (
	resourceField struct {
		Resource string `json:"resource"`
	}
	newRegRequest struct {
		resourceField
		Contact   []string `json:"contact"`
		Agreement string   `json:"agreement"`
	}
	regRequest struct {
		resourceField
		Contact   *[]string `json:"contact"`
		Agreement string    `json:"agreement"`
	}
	newAuthzRequest struct {
		resourceField
		Identifier acme.Identifier `json:"identifier"`
	}
	challengeRequest struct {
		resourceField
		Type             string `json:"type"`
		KeyAuthorization string `json:"keyAuthorization"`
		Path             string `json:"path"`
	}
	newCertRequest struct {
		resourceField
		CSR            string   `json:"csr"`
		Authorizations []string `json:"authorizations"`
	}
	revokeRequest struct {
		resourceField
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
)

func (f resourceField) resource() string { return f.Resource }

// regView is a registration as v1 shows it: the key, contact and agreement
// (the slides' "copied" fields).
type regView struct {
	Key       json.RawMessage `json:"key"`
	Contact   []string        `json:"contact,omitempty"`
	Agreement string          `json:"agreement,omitempty"`
	Status    string          `json:"status"`
	CreatedAt string          `json:"createdAt,omitempty"`
}

func (s *Server) regView(a *storage.Account) regView {
	v := regView{Key: a.Key, Contact: a.Contact, Status: a.Status}
	if a.TermsAgreed {
		v.Agreement = s.cfg.Core.TermsOfService()
	}
	if !a.CreatedAt.IsZero() {
		v.CreatedAt = a.CreatedAt.UTC().Format(time.RFC3339)
	}
	return v
}

type challengeView struct {
	Type      string          `json:"type"`
	Status    string          `json:"status"`
	URI       string          `json:"uri"`
	Token     string          `json:"token"`
	Validated string          `json:"validated,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
}

// challengeView shows a challenge as v1 did: with its uri, and pending
// while it is being validated (v1 has no "processing").
func (s *Server) challengeView(c *storage.Challenge) challengeView {
	v := challengeView{Type: c.Type, Status: c.Status, URI: s.url(challengePath + c.ID), Token: c.Token, Error: legacyError(c.Error)}
	if v.Status == acme.StatusProcessing {
		v.Status = acme.StatusPending
	}
	if !c.Validated.IsZero() {
		v.Validated = c.Validated.UTC().Format(time.RFC3339)
	}
	return v
}

type authzView struct {
	Identifier   acme.Identifier `json:"identifier"`
	Status       string          `json:"status"`
	Expires      string          `json:"expires,omitempty"`
	Challenges   []challengeView `json:"challenges"`
	Combinations [][]int         `json:"combinations"`
}

func (s *Server) authzView(a *storage.Authorization) authzView {
	v := authzView{Identifier: a.Identifier, Status: a.Status, Expires: a.Expires.UTC().Format(time.RFC3339), Challenges: []challengeView{}, Combinations: [][]int{}}
	for i, c := range a.Challenges {
		v.Challenges = append(v.Challenges, s.challengeView(c))
		v.Combinations = append(v.Combinations, []int{i}) // any one challenge suffices
	}
	return v
}

// regLinks are the links of a registration: what to do next, and the terms.
func (s *Server) regLinks(w http.ResponseWriter) {
	w.Header().Add("Link", link(s.url(newAuthzPath), "next"))
	if tos := s.cfg.Core.TermsOfService(); tos != "" {
		w.Header().Add("Link", link(tos, "terms-of-service"))
	}
}

// newReg registers an account key. A key that has an account gets 409 and
// the registration's Location, as Boulder answered.
func (s *Server) newReg(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body newRegRequest
	if err := req.decode(&body, "new-reg"); err != nil {
		return err
	}
	if err := s.checkAgreement(body.Agreement); err != nil {
		return err
	}
	if existing, err := s.account(r, req); err == nil {
		return acme.Conflict(s.url(regPath+existing.ID), "this key already has a registration")
	}
	if tos := s.cfg.Core.TermsOfService(); tos != "" && body.Agreement == "" {
		// Boulder let a registration exist unagreed until a later reg update;
		// Anvil stores no account that has not agreed, so the agreement
		// comes with new-reg. The link says where the terms are.
		w.Header().Add("Link", link(tos, "terms-of-service"))
		return acme.Malformed("new-reg must agree to the terms of service: send \"agreement\": %q", tos)
	}
	acct, created, err := s.cfg.Core.NewAccount(r.Context(), req.jwk,
		acme.NewAccountRequest{Contact: body.Contact, TermsOfServiceAgreed: body.Agreement != ""}, api.RemoteIP(r), s.url(newRegPath))
	if err != nil {
		return err
	}
	if !created {
		return acme.Conflict(s.url(regPath+acct.ID), "this key already has a registration")
	}
	w.Header().Set("Location", s.url(regPath+acct.ID))
	s.regLinks(w)
	return api.WriteJSON(w, http.StatusCreated, s.regView(acct))
}

// checkAgreement accepts an agreement only to the terms this CA publishes.
func (s *Server) checkAgreement(agreement string) error {
	if agreement == "" {
		return nil
	}
	if tos := s.cfg.Core.TermsOfService(); tos != "" && agreement != tos {
		return acme.Malformed("agreement %q is not the current terms of service %s", truncate(agreement, 200), tos)
	}
	return nil
}

// reg fetches or updates a registration (contact, agreement). 202 as Boulder
// answered.
func (s *Server) reg(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body regRequest
	if err := req.decode(&body, "reg"); err != nil {
		return err
	}
	acct, err := s.account(r, req)
	if err != nil {
		return err
	}
	if mux.Vars(r)["id"] != acct.ID {
		return acme.Unauthorized("the request is signed by another registration's key")
	}
	if err := s.checkAgreement(body.Agreement); err != nil {
		return err
	}
	if acct, err = s.cfg.Core.UpdateAccount(r.Context(), acct, acme.UpdateAccountRequest{Contact: body.Contact, TermsOfServiceAgreed: body.Agreement != ""}); err != nil {
		return err
	}
	w.Header().Set("Location", s.url(regPath+acct.ID))
	s.regLinks(w)
	return api.WriteJSON(w, http.StatusAccepted, s.regView(acct))
}

// newAuthz creates a pending authorization for one name. The seed's
// identifier type "domain" is the same thing as "dns".
func (s *Server) newAuthz(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body newAuthzRequest
	if err := req.decode(&body, "new-authz"); err != nil {
		return err
	}
	acct, err := s.account(r, req)
	if err != nil {
		return err
	}
	ident := body.Identifier
	if ident.Type == "domain" {
		ident.Type = "dns"
	}
	if ident.Type != "dns" {
		return acme.UnsupportedIdentifier("ACME v1 authorizes DNS names only (identifier type %q)", truncate(ident.Type, 32))
	}
	a, err := s.cfg.Core.LegacyAuthorize(r.Context(), acct, ident)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(authzPath+a.ID))
	w.Header().Add("Link", link(s.url(newCertPath), "next"))
	return api.WriteJSON(w, http.StatusCreated, s.authzView(a))
}

// authz shows an authorization to a plain GET, as v1 clients poll.
func (s *Server) authz(w http.ResponseWriter, r *http.Request) error {
	a, err := s.cfg.Core.LegacyAuthorization(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	w.Header().Add("Link", link(s.url(newCertPath), "next"))
	return api.WriteJSON(w, http.StatusOK, s.authzView(a))
}

// getChallenge shows a challenge to a plain GET. 202, as Boulder answered
// (and acme-client 1.x checks).
func (s *Server) getChallenge(w http.ResponseWriter, r *http.Request) error {
	ch, a, err := s.cfg.Core.LegacyChallenge(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	w.Header().Add("Link", link(s.url(authzPath+a.ID), "up"))
	return api.WriteJSON(w, http.StatusAccepted, s.challengeView(ch))
}

// postChallenge is the client's answer: {"resource":"challenge",
// "keyAuthorization":…}, with or without "type", or for simpleHttps
// {"resource":"challenge","type":"simpleHttps","path":…}. The key
// authorization must be the one this account's key makes for the token: a
// v1 client states it, and a wrong one is a client error before any
// validation is spent on it.
func (s *Server) postChallenge(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body challengeRequest
	if err := req.decode(&body, "challenge"); err != nil {
		return err
	}
	acct, err := s.account(r, req)
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	ch, _, err := s.cfg.Core.Challenge(r.Context(), acct, id)
	if err != nil {
		return err
	}
	if body.Type != "" && body.Type != ch.Type {
		return acme.Malformed("this is a %s challenge, not %s", ch.Type, truncate(body.Type, 32))
	}
	if ch.Type == acme.SimpleHTTPS {
		// The slides let the applicant choose the file's name; Anvil keeps no
		// per-challenge path (any node may validate), so the name is the token.
		if body.Path != "" && body.Path != ch.Token {
			return acme.Malformed("simpleHttps: the path must be the token %s (serve the token at /.well-known/acme-challenge/%s over HTTPS)", ch.Token, ch.Token)
		}
	} else if want := ch.Token + "." + acct.KeyID; body.KeyAuthorization != want {
		return acme.Unauthorized("keyAuthorization is not the token and this account key's thumbprint")
	}
	ch, a, err := s.cfg.Core.RespondChallenge(r.Context(), acct, id)
	if err != nil {
		return err
	}
	w.Header().Add("Link", link(s.url(authzPath+a.ID), "up"))
	w.Header().Set("Location", s.url(challengePath+ch.ID))
	return api.WriteJSON(w, http.StatusAccepted, s.challengeView(ch))
}

// newCert issues for a CSR: an implicit order for its names, finalized on
// the same path as an RFC 8555 order. The answer is the DER certificate.
func (s *Server) newCert(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body newCertRequest
	if err := req.decode(&body, "new-cert"); err != nil {
		return err
	}
	acct, err := s.account(r, req)
	if err != nil {
		return err
	}
	csr, err := base64.RawURLEncoding.DecodeString(body.CSR)
	if err != nil || len(csr) == 0 {
		return acme.BadCSR("csr must be the base64url (unpadded) DER encoding of a CSR")
	}
	var ids []string
	for _, u := range body.Authorizations {
		id, ok := strings.CutPrefix(u, s.url(authzPath))
		if !ok || id == "" || strings.Contains(id, "/") {
			return acme.Malformed("%q is not an authorization URL of this server", truncate(u, 200))
		}
		ids = append(ids, id)
	}
	o, err := s.cfg.Core.LegacyIssue(r.Context(), acct, req.jwk, csr, ids)
	if err != nil {
		return err
	}
	if o.Status != acme.StatusValid || o.CertSerial == "" {
		// Only a remote signer whose answer was lost leaves an order
		// processing; the order keeps its one certificate, but a v1 client
		// has no order URL to poll.
		return acme.ServiceUnavailable(nil, 0, "the certificate is being issued; it is not ready yet")
	}
	return s.writeCert(w, r, o.CertSerial, http.StatusCreated)
}

// writeCert answers with one DER certificate, its Location and the "up"
// link to its issuer.
func (s *Server) writeCert(w http.ResponseWriter, r *http.Request, serial string, status int) error {
	der, _, err := s.cfg.Core.Certificate(r.Context(), serial)
	if err != nil {
		return err
	}
	w.Header().Set("Location", s.url(certPath+serial))
	w.Header().Add("Link", link(s.url(certPath+serial+"/issuer"), "up"))
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.WriteHeader(status)
	_, err = w.Write(der)
	return err
}

// certificate serves a certificate to a plain GET.
func (s *Server) certificate(w http.ResponseWriter, r *http.Request) error {
	return s.writeCert(w, r, mux.Vars(r)["serial"], http.StatusOK)
}

// issuerCertificate serves the certificate that issued a certificate, the
// "up" of new-cert: the first of its default chain.
func (s *Server) issuerCertificate(w http.ResponseWriter, r *http.Request) error {
	_, chains, err := s.cfg.Core.Certificate(r.Context(), mux.Vars(r)["serial"])
	if err != nil {
		return err
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		return acme.NotFound("no issuer certificate")
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(chains[0][0])
	return err
}

// revokeCert revokes a certificate, signed by an account's key (the account
// it was issued to, or one authorized for all its names) or by the
// certificate's own key, the rules of RFC 8555 7.6.
func (s *Server) revokeCert(w http.ResponseWriter, r *http.Request) error {
	req, err := s.verify(r)
	if err != nil {
		return err
	}
	var body revokeRequest
	if err := req.decode(&body, "revoke-cert"); err != nil {
		return err
	}
	der, err := base64.RawURLEncoding.DecodeString(body.Certificate)
	if err != nil || len(der) == 0 {
		return acme.Malformed("certificate must be the base64url (unpadded) DER encoding of a certificate")
	}
	rr := acme.RevokeRequest{CertDER: der, Reason: body.Reason}
	if acct, err := s.account(r, req); err == nil {
		rr.Account = acct
	} else {
		rr.JWK = req.jwk
	}
	if err := s.cfg.Core.Revoke(r.Context(), rr); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
