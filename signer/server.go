package signer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// ServerConfig assembles a Server.
type ServerConfig struct {
	Service *issuance.Service
	// Store is the signer's own ledger store, where it finds the certificate
	// already recorded for a retried request.
	Store storage.Store
	// AllowedClients are the client identities served: a client certificate's
	// common name, or any of its DNS or URI names.
	AllowedClients []string
	Logger         *slog.Logger
}

// Server is the issuance service over mutual TLS.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	flight singleflight.Group
}

// maxRequest bounds a request body; a CSR with 100 names is a few KiB.
const maxRequest = 64 << 10

// NewServer returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Service == nil || cfg.Store == nil {
		return nil, errors.New("signer: service and store are required")
	}
	if len(cfg.AllowedClients) == 0 {
		return nil, errors.New("signer: no allowed clients: name the front ends' certificate identities")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// ServerTLS is the TLS configuration of a signer: its certificate, and client
// certificates required and verified against clientCA.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("signer certificate: %w", err)
	}
	pool, err := loadPool(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificates", file)
	}
	return pool, nil
}

// Handler routes the two calls behind the client identity check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/issue", s.issue)
	mux.HandleFunc("GET /v1/info", s.info)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.allowed(r)
		if !ok {
			s.log.Warn("signer: client refused", "client", id, "remote", r.RemoteAddr)
			writeProblem(w, http.StatusForbidden, Problem{Kind: "forbidden", Detail: "client identity not allowed"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// allowed checks the verified client certificate against the allow-list.
func (s *Server) allowed(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	ids := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	for _, id := range ids {
		if id != "" && slices.Contains(s.cfg.AllowedClients, id) {
			return id, true
		}
	}
	return leaf.Subject.CommonName, false
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	info := Info{Chains: map[string][][][]byte{}}
	for _, p := range s.cfg.Service.Profiles() {
		info.Profiles = append(info.Profiles, ProfileInfo{Name: p.Name, Description: p.Description})
	}
	for _, iss := range s.cfg.Service.Issuers() {
		info.Chains[iss.Name()] = iss.Chains()
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil || len(body) > maxRequest {
		writeProblem(w, http.StatusBadRequest, Problem{Kind: "malformed", Detail: "request body unreadable or too large"})
		return
	}
	var req IssueRequest
	dec := json.NewDecoder(bytesReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, Problem{Kind: "malformed", Detail: "request: " + err.Error()})
		return
	}
	if req.Requester == "" || len(req.CSR) == 0 {
		writeProblem(w, http.StatusBadRequest, Problem{Kind: "malformed", Detail: "csr and requester are required"})
		return
	}
	var ips []net.IP
	for _, s := range req.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			writeProblem(w, http.StatusBadRequest, Problem{Kind: "malformed", Detail: fmt.Sprintf("ip address %q", s)})
			return
		}
		ips = append(ips, ip)
	}
	client, _ := s.allowed(r)
	// One request at a time per requester, so that a retry arriving while the
	// first attempt is still signing waits for it instead of signing again.
	v, err, _ := s.flight.Do(req.Requester, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
		defer cancel()
		if resp, ok := s.replay(ctx, req.Requester); ok {
			return resp, nil
		}
		issued, err := s.cfg.Service.Issue(ctx, issuance.Request{
			CSR: req.CSR, DNSNames: req.DNSNames, IPAddresses: ips, Profile: req.Profile, Requester: req.Requester,
		})
		if err != nil {
			return nil, err
		}
		return &IssueResponse{DER: issued.DER, Chain: issued.Chain, Issuer: issued.Issuer, Profile: issued.Profile}, nil
	})
	if err != nil {
		kind, status := kindOf(err)
		s.log.Warn("signer: issuance refused", "client", client, "requester", req.Requester, "kind", kind, "error", err.Error())
		writeProblem(w, status, Problem{Kind: kind, Detail: err.Error()})
		return
	}
	resp := v.(*IssueResponse)
	s.log.Info("signer: issued", "client", client, "requester", req.Requester, "replayed", resp.Replayed)
	writeJSON(w, http.StatusOK, resp)
}

// replay finds the certificate already recorded for a requester.
func (s *Server) replay(ctx context.Context, requester string) (*IssueResponse, bool) {
	certs, err := s.cfg.Store.CertificatesForOrder(ctx, requester)
	if err != nil {
		return nil, false
	}
	for i := len(certs) - 1; i >= 0; i-- {
		c := certs[i]
		if c.DER == nil {
			continue
		}
		chains, ok := s.cfg.Service.Chains(c.Issuer)
		if !ok {
			return nil, false
		}
		return &IssueResponse{DER: c.DER, Chain: chains[0], Issuer: c.Issuer, Profile: c.Profile, Replayed: true}, true
	}
	return nil, false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, p Problem) {
	writeJSON(w, status, p)
}
