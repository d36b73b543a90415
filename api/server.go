// Package api is Anvil's ACME front end over HTTP (RFC 8555): the directory,
// nonces, every JWS check of section 6, the routes of each resource, and the
// rendering of records and problems as JSON. It decides nothing about accounts,
// orders or certificates itself: it authenticates a request, decodes it strictly
// and hands typed values to package acme, then renders what comes back.
//
// Only this package turns an *acme.Problem into application/problem+json with
// its HTTP status, in one place (problems.go) that api/legacy uses too;
// internal causes go to the log, never to the client.
package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/anvil-pki/anvil/acme"
)

// Paths of the ACME resources, below the base URL.
const (
	directoryPath   = "/directory"
	newNoncePath    = "/acme/new-nonce"
	newAccountPath  = "/acme/new-account"
	newOrderPath    = "/acme/new-order"
	revokePath      = "/acme/revoke-cert"
	keyChangePath   = "/acme/key-change"
	accountPath     = "/acme/acct/"
	orderPath       = "/acme/order/"
	authzPath       = "/acme/authz/"
	challengePath   = "/acme/chall/"
	certPath        = "/acme/cert/"
	newAuthzPath    = "/acme/new-authz"
	renewalInfoPath = "/acme/renewal-info/"
)

// Config assembles a Server.
type Config struct {
	// BaseURL is the scheme and authority clients use ("https://acme.example.com");
	// every JWS url is checked against it.
	BaseURL string
	// Core is the protocol core every request is handed to.
	Core   Core
	Nonces NonceSource
	// MaxBodyBytes bounds a request body (default 64 KiB).
	MaxBodyBytes int64
	// Directory meta (RFC 8555 7.1.1).
	Website                 string
	CAAIdentities           []string
	ExternalAccountRequired bool
	// PreAuthorization lists newAuthz in the directory.
	PreAuthorization bool
	// RetryAfter is what clients are told to wait while something is processing.
	RetryAfter time.Duration
	Logger     *slog.Logger
	// Observer, when set, is told of each request and problem (metrics).
	Observer Observer
}

// Server serves the ACME API.
type Server struct {
	cfg    Config
	nonces NonceSource
	log    *slog.Logger
	router *mux.Router
	obs    Observer
}

// New builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Core == nil || cfg.Nonces == nil || cfg.BaseURL == "" {
		return nil, errors.New("api: core, nonces and base URL are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, nonces: cfg.Nonces, log: cfg.Logger, router: mux.NewRouter(), obs: cfg.Observer}
	if s.obs == nil {
		s.obs = noObserver{}
	}
	r := s.router
	r.Handle(directoryPath, s.handle(s.directory, false)).Methods(http.MethodGet)
	r.Handle(newNoncePath, s.handle(s.newNonce, false)).Methods(http.MethodGet, http.MethodHead)
	r.Handle(newAccountPath, s.handle(s.newAccount, true)).Methods(http.MethodPost)
	r.Handle(accountPath+"{id}", s.handle(s.account, true)).Methods(http.MethodPost)
	r.Handle(newOrderPath, s.handle(s.newOrder, true)).Methods(http.MethodPost)
	r.Handle(orderPath+"{id}", s.handle(s.order, true)).Methods(http.MethodPost)
	r.Handle(orderPath+"{id}/finalize", s.handle(s.finalize, true)).Methods(http.MethodPost)
	r.Handle(authzPath+"{id}", s.handle(s.authorization, true)).Methods(http.MethodPost)
	r.Handle(challengePath+"{id}", s.handle(s.challenge, true)).Methods(http.MethodPost)
	r.Handle(certPath+"{serial}", s.handle(s.certificate, true)).Methods(http.MethodPost)
	r.Handle(certPath+"{serial}/{alt:[0-9]+}", s.handle(s.certificate, true)).Methods(http.MethodPost)
	r.Handle(keyChangePath, s.handle(s.keyChange, true)).Methods(http.MethodPost)
	r.Handle(accountPath+"{id}/orders", s.handle(s.accountOrders, true)).Methods(http.MethodPost)
	r.Handle(revokePath, s.handle(s.revokeCert, true)).Methods(http.MethodPost)
	r.Handle(newAuthzPath, s.handle(s.newAuthz, true)).Methods(http.MethodPost)
	r.PathPrefix(renewalInfoPath).Handler(s.handle(s.renewalInfo, false)).Methods(http.MethodGet)
	// RFC 8555 6.3: apart from the directory and newNonce (and ARI's
	// renewalInfo), every resource is POST-as-GET only, and a GET is a 405
	// malformed; RFC 9110 15.5.6: a 405 says in Allow what the resource takes.
	r.MethodNotAllowedHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		allowed := s.allowedMethods(r)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return WithStatus(http.StatusMethodNotAllowed, acme.Malformed("method %s is not allowed here; use %s", r.Method, strings.Join(allowed, " or ")))
	}, false)
	r.NotFoundHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return acme.NotFound("no resource at %s", r.URL.Path)
	}, false)
	return s, nil
}

// allowedMethods lists the methods the routes take at r's path.
func (s *Server) allowedMethods(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if s.router.Match(probe, &match) && match.MatchErr == nil {
			out = append(out, m)
		}
	}
	return out
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) url(path string) string { return s.cfg.BaseURL + path }

// AccountURL is an account's URL, its kid.
func (s *Server) AccountURL(id string) string { return s.url(accountPath + id) }

// handle wraps a handler: the index link on every response, a fresh nonce on
// every POST response (errors included, so that a client can retry a bad
// nonce), and problems rendered as RFC 7807 documents.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error, isPOST bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w, done := s.observe(w, r)
		defer done()
		w.Header().Add("Link", link(s.url(directoryPath), "index"))
		if isPOST {
			w.Header().Set("Replay-Nonce", s.nonces.New())
		}
		w.Header().Set("Cache-Control", "no-store")
		err := h(w, r)
		if err != nil {
			s.writeProblem(w, r, err)
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start), "error", err)
	})
}

func link(url, rel string) string { return "<" + url + `>;rel="` + rel + `"` }

func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p, status := ResolveProblem(err)
	s.obs.ObserveProblem(p.Type)
	LogProblem(s.log, "request failed", r, p, status)
	WriteProblem(w, p, status, newProblemDocument(p, status))
}

// strconvSeconds renders a duration as whole seconds, rounded up, for
// Retry-After.
func strconvSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return acme.ServerInternal(err, "encoding the response")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// remoteIP is the client's address as seen on the connection.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// directory serves the directory object (RFC 8555 7.1.1).
func (s *Server) directory(w http.ResponseWriter, r *http.Request) error {
	meta := map[string]any{}
	if tos := s.cfg.Core.TermsOfService(); tos != "" {
		meta["termsOfService"] = tos
	}
	if s.cfg.Website != "" {
		meta["website"] = s.cfg.Website
	}
	if len(s.cfg.CAAIdentities) > 0 {
		meta["caaIdentities"] = s.cfg.CAAIdentities
	}
	meta["externalAccountRequired"] = s.cfg.ExternalAccountRequired
	if profiles := s.cfg.Core.Profiles(); len(profiles) > 0 {
		m := map[string]string{}
		for _, p := range profiles {
			m[p.Name] = p.Description
		}
		meta["profiles"] = m
	}
	dir := map[string]any{
		"newNonce":    s.url(newNoncePath),
		"newAccount":  s.url(newAccountPath),
		"newOrder":    s.url(newOrderPath),
		"revokeCert":  s.url(revokePath),
		"keyChange":   s.url(keyChangePath),
		"renewalInfo": s.url(strings.TrimSuffix(renewalInfoPath, "/")),
		"meta":        meta,
	}
	if s.cfg.PreAuthorization {
		dir["newAuthz"] = s.url(newAuthzPath)
	}
	w.Header().Del("Link")
	w.Header().Set("Cache-Control", "public, max-age=0, no-cache")
	return writeJSON(w, http.StatusOK, dir)
}

// newNonce hands out a nonce: 200 to HEAD, 204 to GET (RFC 8555 7.2).
func (s *Server) newNonce(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Replay-Nonce", s.nonces.New())
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}
