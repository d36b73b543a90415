// Package legacy is Anvil's ACME v1 front end: the flow of draft-barnes-acme
// (the seed of Anvil) as Let's Encrypt's Boulder served it until 2021 —
// new-reg, new-authz, challenges answered with a key authorization (and the
// seed's simpleHttps), new-cert answered with a DER certificate, revoke-cert —
// for appliances and scripts that speak nothing newer.
//
// It is a second, small front end on the same protocol core as package api:
// every request becomes a call on the same *acme.Core, so the same accounts,
// authorizations, validation, policy, ledger, lint and HSM serve it, and every
// invariant of the RFC 8555 front end holds here too. It owns only what ACME
// v1 says differently on the wire: the JWS shape v1 clients send (alg and jwk
// may sit in the unprotected header), nonces handed out on any URL, the
// "resource" member, absolute Location and Link headers, DER certificates,
// and problem types in the urn:acme:error: namespace. It decides nothing
// itself, and it is off unless the configuration turns it on.
package legacy

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
)

// Prefix is where the v1 API lives, below the base URL. The RFC 8555 API
// keeps /directory and /acme/...; the v1 resources share names with some of
// those (revoke-cert, new-authz, authz, cert), so they get their own tree.
const Prefix = "/acme/v1"

// Paths of the v1 resources.
const (
	DirectoryPath = Prefix + "/directory"
	newRegPath    = Prefix + "/new-reg"
	regPath       = Prefix + "/reg/"
	newAuthzPath  = Prefix + "/new-authz"
	authzPath     = Prefix + "/authz/"
	challengePath = Prefix + "/challenge/"
	newCertPath   = Prefix + "/new-cert"
	certPath      = Prefix + "/cert/"
	revokePath    = Prefix + "/revoke-cert"
)

// Config assembles a Server.
type Config struct {
	// BaseURL is the scheme and authority clients use, as for package api.
	BaseURL string
	// Core is the protocol core, the same one package api serves.
	Core Core
	// Nonces is the nonce service of the RFC 8555 front end: one service, so
	// a nonce is redeemed once whichever API it is spent on.
	Nonces api.NonceSource
	// MaxBodyBytes bounds a request body (default 64 KiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Server serves the ACME v1 API.
type Server struct {
	cfg    Config
	log    *slog.Logger
	router *mux.Router
}

// New builds the v1 front end and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Core == nil || cfg.Nonces == nil || cfg.BaseURL == "" {
		return nil, errors.New("legacy: core, nonces and base URL are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, router: mux.NewRouter()}
	r := s.router
	// ACME v1 has no newNonce resource: a client sends HEAD to the URL it is
	// about to POST to (or to the directory) and takes the Replay-Nonce. So
	// every URL answers HEAD, and every response carries a fresh nonce.
	r.Methods(http.MethodHead).PathPrefix(Prefix + "/").Handler(s.handle(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	r.Handle(DirectoryPath, s.handle(s.directory)).Methods(http.MethodGet)
	r.Handle(newRegPath, s.handle(s.newReg)).Methods(http.MethodPost)
	r.Handle(regPath+"{id}", s.handle(s.reg)).Methods(http.MethodPost)
	r.Handle(newAuthzPath, s.handle(s.newAuthz)).Methods(http.MethodPost)
	r.Handle(authzPath+"{id}", s.handle(s.authz)).Methods(http.MethodGet)
	r.Handle(challengePath+"{id}", s.handle(s.getChallenge)).Methods(http.MethodGet)
	r.Handle(challengePath+"{id}", s.handle(s.postChallenge)).Methods(http.MethodPost)
	r.Handle(newCertPath, s.handle(s.newCert)).Methods(http.MethodPost)
	r.Handle(certPath+"{serial}", s.handle(s.certificate)).Methods(http.MethodGet)
	r.Handle(certPath+"{serial}/issuer", s.handle(s.issuerCertificate)).Methods(http.MethodGet)
	r.Handle(revokePath, s.handle(s.revokeCert)).Methods(http.MethodPost)
	r.MethodNotAllowedHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return api.WithStatus(http.StatusMethodNotAllowed, acme.Malformed("method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.NotFoundHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return acme.NotFound("no resource at %s", r.URL.Path)
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Mount returns a handler that sends the v1 tree to s and everything else to
// next (the RFC 8555 front end).
func Mount(s *Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Prefix || strings.HasPrefix(r.URL.Path, Prefix+"/") {
			s.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) url(path string) string { return s.cfg.BaseURL + path }

// handle wraps a handler: a fresh nonce on every response, whatever the
// method and status (v1 clients take their first nonce from any URL, and
// retry a badNonce with the one its answer carries), and problems rendered in
// the v1 namespace.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Replay-Nonce", s.cfg.Nonces.New())
		w.Header().Set("Cache-Control", "no-store")
		err := h(w, r)
		if err != nil {
			s.writeProblem(w, r, err)
		}
		s.log.Debug("legacy request", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start), "error", err)
	})
}

// v1Problem is an acme.Problem as ACME v1 spells it.
type v1Problem struct {
	Type        string           `json:"type"`
	Detail      string           `json:"detail,omitempty"`
	Status      int              `json:"status,omitempty"`
	Subproblems []v1Subproblem   `json:"subproblems,omitempty"`
	Algorithms  []string         `json:"algorithms,omitempty"`
	Identifier  *acme.Identifier `json:"identifier,omitempty"`
}

type v1Subproblem struct {
	Type       string          `json:"type"`
	Detail     string          `json:"detail,omitempty"`
	Identifier acme.Identifier `json:"identifier"`
}

func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	// The status is ACME v2's for the same problem (api.ResolveProblem); only
	// the type's namespace differs.
	p, status := api.ResolveProblem(err)
	api.LogProblem(s.log, "legacy request failed", r, p, status)
	out := v1Problem{Type: acme.LegacyProblemType(p.Type), Detail: p.Detail, Status: status, Algorithms: p.Algorithms}
	for _, sp := range p.Subproblems {
		out.Subproblems = append(out.Subproblems, v1Subproblem{Type: acme.LegacyProblemType(sp.Type), Detail: sp.Detail, Identifier: sp.Identifier})
	}
	api.WriteProblem(w, p, status, out)
}

// legacyError rewrites a stored RFC 8555 problem (a challenge's error) in the
// v1 namespace, with the status of its type.
func legacyError(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var p v1Problem
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil
	}
	p.Status = api.ProblemStatus(&acme.Problem{Type: p.Type})
	p.Type = acme.LegacyProblemType(p.Type)
	for i := range p.Subproblems {
		p.Subproblems[i].Type = acme.LegacyProblemType(p.Subproblems[i].Type)
	}
	b, _ := json.Marshal(p)
	return b
}

// link is an RFC 8288 Link value with an absolute URL and a quoted
// relation, the spelling v1 clients parse.
func link(url, rel string) string { return "<" + url + `>;rel="` + rel + `"` }

// directory serves the v1 directory: the four resources of the seed, and
// the terms in meta as Boulder put them.
func (s *Server) directory(w http.ResponseWriter, r *http.Request) error {
	dir := map[string]any{
		"new-reg":     s.url(newRegPath),
		"new-authz":   s.url(newAuthzPath),
		"new-cert":    s.url(newCertPath),
		"revoke-cert": s.url(revokePath),
	}
	if tos := s.cfg.Core.TermsOfService(); tos != "" {
		dir["meta"] = map[string]any{"terms-of-service": tos}
	}
	return api.WriteJSON(w, http.StatusOK, dir)
}
