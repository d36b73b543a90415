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
	"sync/atomic"
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
	Store Store
	// AllowedClients are the client identities served: a client certificate's
	// common name, or any of its DNS or URI names.
	AllowedClients []string
	Logger         *slog.Logger
}

// Store is what the server needs of storage: the per-requester lease that
// keeps two signers off one order, and the ledger rows a retry is answered
// from. storage.Store satisfies it; the issuance rows themselves are written
// by the Service's own issuance.Ledger.
type Store interface {
	TryLeaseAndCertificates(ctx context.Context, name, holder string, now time.Time, ttl time.Duration, orderID string) (bool, []*storage.Certificate, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

var _ Store = storage.Store(nil)

// Server is the issuance service over mutual TLS.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	flight  singleflight.Group
	id      string        // this process, in lease holders
	flights atomic.Uint64 // numbers each attempt, so that holders are unique
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
	host, _ := os.Hostname()
	return &Server{cfg: cfg, log: cfg.Logger, id: fmt.Sprintf("signer:%s:%d:%x", host, os.Getpid(), randomBytes(4))}, nil
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
	// Concurrent copies of one request share one attempt; a different CSR for
	// the same requester is another flight, kept apart by the lease below.
	key := req.Requester + "\x00" + string(sha256Sum(req.CSR))
	v, err, _ := s.flight.Do(key, func() (any, error) {
		// The work outlives a client that hangs up, so that its retry finds the
		// result in the ledger; it ends before the client's own attempt timeout.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), issueTimeout)
		defer cancel()
		return s.issueOnce(ctx, &req, ips)
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

// issueTimeout bounds the signer's work on one request. It is shorter than a
// client's attempt (ClientConfig.Timeout, 30 s by default), so that a client
// that gave up on an attempt finds the signer done with it.
const issueTimeout = 20 * time.Second

// issueOnce issues for a request unless its requester already has a
// certificate. A lease in the database, named after the requester, keeps
// every other signer and flight off the requester meanwhile: two signers
// behind a load balancer never both sign for one order.
func (s *Server) issueOnce(ctx context.Context, req *IssueRequest, ips []net.IP) (*IssueResponse, error) {
	holder := fmt.Sprintf("%s/%d", s.id, s.flights.Add(1))
	lease := "issue/" + req.Requester
	got, certs, err := s.leaseAndCertificates(ctx, lease, holder, req.Requester)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", issuance.ErrLedger, err)
	}
	if !got {
		return nil, fmt.Errorf("%w: another signer is issuing for %s", issuance.ErrOutcomeUnknown, req.Requester)
	}
	defer func() {
		// Released: the next request for this requester is answered from the
		// ledger (or issues, if this attempt failed) without waiting.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.cfg.Store.ReleaseLease(rctx, lease, holder); err != nil {
			s.log.Warn("signer: lease not released; it expires by itself", "requester", req.Requester, "error", err)
		}
	}()
	if resp, err := s.replay(ctx, certs, req, ips); resp != nil || err != nil {
		return resp, err
	}
	issued, err := s.cfg.Service.Issue(ctx, issuance.Request{
		CSR: req.CSR, DNSNames: req.DNSNames, IPAddresses: ips, Profile: req.Profile, Requester: req.Requester,
	})
	if err != nil {
		return nil, err
	}
	return &IssueResponse{DER: issued.DER, Chain: issued.Chain, Issuer: issued.Issuer, Profile: issued.Profile}, nil
}

// leaseAndCertificates takes the requester's lease and, if it got it, reads
// the requester's ledger rows, written before the lease was free: in one
// round trip on PostgreSQL.
func (s *Server) leaseAndCertificates(ctx context.Context, lease, holder, requester string) (bool, []*storage.Certificate, error) {
	return s.cfg.Store.TryLeaseAndCertificates(ctx, lease, holder, time.Now(), issueTimeout+10*time.Second, requester)
}

// replay answers a request whose requester already has a certificate among
// its ledger rows (certs): with that certificate when it is for the same key
// and names, with ErrRequesterConflict when it is not. (nil, nil) means there
// is none.
func (s *Server) replay(ctx context.Context, certs []*storage.Certificate, req *IssueRequest, ips []net.IP) (*IssueResponse, error) {
	for i := len(certs) - 1; i >= 0; i-- {
		c := certs[i]
		if c.DER == nil {
			// An intent that never got its certificate: that attempt failed
			// before or at the HSM, and nothing of it was handed out.
			continue
		}
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, fmt.Errorf("%w: recorded certificate %s does not parse: %w", issuance.ErrLedger, c.Serial, err)
		}
		csr, err := x509.ParseCertificateRequest(req.CSR)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", issuance.ErrBadCSR, err)
		}
		if err := matches(cert, csr.RawSubjectPublicKeyInfo, req.DNSNames, ips); err != nil {
			return nil, fmt.Errorf("%w: %s has certificate %s: %w", issuance.ErrRequesterConflict, req.Requester, c.Serial, err)
		}
		chains, ok := s.cfg.Service.Chains(c.Issuer)
		if !ok {
			return nil, fmt.Errorf("recorded certificate %s is from issuer %q, which this signer no longer has", c.Serial, c.Issuer)
		}
		return &IssueResponse{DER: c.DER, Chain: chains[0], Issuer: c.Issuer, Profile: c.Profile, Replayed: true}, nil
	}
	return nil, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, p Problem) {
	writeJSON(w, status, p)
}
