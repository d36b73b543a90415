package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/postgres"
	"github.com/anvil-pki/anvil/storage/sqlite"
	"github.com/anvil-pki/anvil/validation"
)

func init() {
	register("serve", "run the ACME server", runServe)
}

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "serve YAML file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("--config is required")
	}
	var cfg serveConfig
	if err := config.Load(*path, &cfg); err != nil {
		return err
	}
	logger := newLogger(cfg.Log)
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" {
		// The server's live heap is a few megabytes, so the default GOGC=100
		// collects very often; collecting at 4x the live heap spends a few
		// more megabytes to save a tenth of the CPU. GOGC in the environment
		// still wins.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := buildServer(ctx, &cfg, logger)
	if err != nil {
		return err
	}
	defer srv.close()
	return srv.run(ctx)
}

func newLogger(c logConfig) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil || c.Level == "" {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// server is a running `anvil serve` and what it must release.
type server struct {
	cfg         *serveConfig
	log         *slog.Logger
	store       storage.Store
	tokens      []*hsm.Token
	tokenByName map[string]*hsm.Token
	ca          *acme.CA
	api         *api.Server
	issuer      *issuance.Service
	publisher   *revocation.Publisher
	tlsCert     *certHolder
	tlsIssuer   *issuance.Service
	closers     []func()
}

func (s *server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// buildServer opens the database and the HSM, loads the issuers and wires the
// protocol core to the API. Anything wrong in the configuration or the HSM stops
// it here, before a port is opened.
func buildServer(ctx context.Context, cfg *serveConfig, logger *slog.Logger) (*server, error) {
	s := &server{cfg: cfg, log: logger}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	store, err := openStore(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	s.store = store
	s.closers = append(s.closers, func() { store.Close() })

	issuers, err := s.loadIssuers(ctx)
	if err != nil {
		return nil, err
	}
	if s.publisher, err = s.buildPublisher(ctx, issuers); err != nil {
		return nil, err
	}
	rules, err := policy.New(cfg.Policy)
	if err != nil {
		return nil, err
	}
	profiles, err := buildProfiles(cfg)
	if err != nil {
		return nil, err
	}
	svc, err := issuance.NewService(issuance.ServiceConfig{
		Issuers: issuers, Profiles: profiles, DefaultProfile: cfg.DefaultProfile,
		Ledger: acme.Ledger{Store: store}, Policy: rules,
		SerialPrefix: byte(cfg.SerialPrefix), Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	s.issuer = svc

	v, err := validation.New(cfg.Validation)
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	nonceKey, err := loadOrCreateKey(cfg.Nonce.KeyFile)
	if err != nil {
		return nil, err
	}
	nonces, err := api.NewNonces(nonceKey, cfg.Nonce.Lifetime.Duration, store)
	if err != nil {
		return nil, err
	}
	var apiServer *api.Server
	ca, err := acme.New(acme.Config{
		Policy:                  rules,
		ChallengeTypes:          cfg.ACME.ChallengeTypes,
		OrderLifetime:           cfg.ACME.OrderLifetime.Duration,
		PendingAuthzLifetime:    cfg.ACME.PendingAuthzLife.Duration,
		ValidAuthzLifetime:      cfg.ACME.ValidAuthzLife.Duration,
		MaxIdentifiers:          cfg.ACME.MaxIdentifiers,
		TermsOfService:          cfg.ACME.TermsOfService,
		InlineValidation:        cfg.ACME.InlineValidation.Or(5 * time.Second),
		ValidationAttempts:      cfg.ACME.ValidationAttempts,
		RetryBackoff:            cfg.ACME.RetryBackoff.Duration,
		CAA:                     !cfg.Validation.DisableCAA,
		CAARecheckAfter:         cfg.ACME.CAARecheckAfter.Duration,
		ReuseAuthorizations:     cfg.ACME.ReuseAuthorizations == nil || *cfg.ACME.ReuseAuthorizations,
		PreAuthorization:        cfg.ACME.PreAuthorization,
		ExternalAccountRequired: cfg.ACME.ExternalAccountRequired,
		OrdersPerPage:           cfg.ACME.OrdersPerPage,
		RateLimits: acme.RateLimits{
			NewOrdersPerAccount:      cfg.ACME.RateLimits.NewOrdersPerAccount.limit(),
			NewAccountsPerIP:         cfg.ACME.RateLimits.NewAccountsPerIP.limit(),
			FailedValidationsPerName: cfg.ACME.RateLimits.FailedValidationsPerName.limit(),
		},
		AccountURL: func(id string) string { return apiServer.AccountURL(id) },
		OnRevoke:   s.publisher.Revoked,
		Logger:     logger,
	}, store, acme.LocalIssuer{Service: svc}, validatorAdapter{v})
	if err != nil {
		return nil, err
	}
	s.ca = ca
	apiServer, err = api.New(api.Config{
		BaseURL:                 cfg.BaseURL,
		CA:                      ca,
		Nonces:                  nonces,
		MaxBodyBytes:            cfg.ACME.MaxBodyBytes,
		Website:                 cfg.ACME.Website,
		CAAIdentities:           cfg.ACME.CAAIdentities,
		ExternalAccountRequired: cfg.ACME.ExternalAccountRequired,
		PreAuthorization:        cfg.ACME.PreAuthorization,
		Logger:                  logger,
	})
	if err != nil {
		return nil, err
	}
	s.api = apiServer

	if s.tlsCert, err = s.ensureTLSCertificate(ctx, issuers, profiles); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	ok = true
	return s, nil
}

func openStore(ctx context.Context, c databaseConfig) (storage.Store, error) {
	dsn := c.DSN
	if c.DSNEnv != "" {
		dsn = os.Getenv(c.DSNEnv)
		if dsn == "" {
			return nil, fmt.Errorf("database.dsn_env: %s is not set", c.DSNEnv)
		}
	}
	switch c.Driver {
	case "sqlite":
		return sqlite.Open(dsn)
	case "postgres":
		return postgres.Open(ctx, dsn)
	}
	return nil, fmt.Errorf("database.driver %q", c.Driver)
}

// loadIssuers opens each token the issuers' keys name (once per token), finds
// the keys, and pairs them with their certificates.
func (s *server) loadIssuers(ctx context.Context) ([]*issuance.Issuer, error) {
	var out []*issuance.Issuer
	for i, ic := range s.cfg.Issuers {
		path := fmt.Sprintf("issuers[%d]", i)
		u, err := hsm.ParseURI(ic.Key)
		if err != nil {
			return nil, fmt.Errorf("%s.key: %w", path, err)
		}
		tok, err := s.tokenFor(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		key, err := tok.FindKey(u.KeyRef())
		if err != nil {
			return nil, fmt.Errorf("%s.key: %w", path, err)
		}
		cert, err := readCertPEM(ic.Certificate)
		if err != nil {
			return nil, fmt.Errorf("%s.certificate: %w", path, err)
		}
		var chain []*x509.Certificate
		for j, f := range ic.Chain {
			c, err := readCertPEM(f)
			if err != nil {
				return nil, fmt.Errorf("%s.chain[%d]: %w", path, j, err)
			}
			chain = append(chain, c)
		}
		iss, err := issuance.NewIssuer(ctx, ic.Name, cert, key, issuance.URLs{IssuerURL: ic.IssuerURL, OCSPURL: ic.OCSPURL, CRLURL: ic.CRLURL}, chain...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for j, files := range ic.AlternateChains {
			var alt []*x509.Certificate
			for _, f := range files {
				c, err := readCertPEM(f)
				if err != nil {
					return nil, fmt.Errorf("%s.alternate_chains[%d]: %w", path, j, err)
				}
				alt = append(alt, c)
			}
			if err := iss.AddAlternateChain(alt...); err != nil {
				return nil, fmt.Errorf("%s.alternate_chains[%d]: %w", path, j, err)
			}
		}
		s.log.Info("issuer loaded", "issuer", ic.Name, "subject", cert.Subject.String(), "token", tok.Label(), "key", key.Ref().String())
		out = append(out, iss)
	}
	return out, nil
}

// tokenFor opens the token a key URI names, once per token, with the hsm
// section's module and PIN unless the URI says otherwise.
func (s *server) tokenFor(u *hsm.URI) (*hsm.Token, error) {
	key := u.Token + "|" + u.Serial
	if s.tokenByName == nil {
		s.tokenByName = map[string]*hsm.Token{}
	}
	if tok := s.tokenByName[key]; tok != nil {
		return tok, nil
	}
	hc := hsm.Config{
		ModulePath: s.cfg.HSM.Module, TokenLabel: u.Token, TokenSerial: u.Serial, PIN: s.cfg.HSM.PIN,
		MaxSessions: s.cfg.HSM.MaxSessions, SessionWait: s.cfg.HSM.SessionWait.Duration,
		SignTimeout: s.cfg.HSM.SignTimeout.Duration, Logger: s.log,
	}
	if u.ModulePath != "" {
		hc.ModulePath = u.ModulePath
	}
	if u.PINSource != "" {
		var err error
		if hc.PIN, err = hsm.ParsePINSource(u.PINSource); err != nil {
			return nil, err
		}
	}
	tok, err := hsm.Open(hc)
	if err != nil {
		return nil, err
	}
	s.tokenByName[key] = tok
	s.tokens = append(s.tokens, tok)
	s.closers = append(s.closers, func() { tok.Close() })
	return tok, nil
}

// buildProfiles checks the profiles, default first, then by name.
func buildProfiles(cfg *serveConfig) ([]*issuance.Profile, error) {
	names := make([]string, 0, len(cfg.Profiles))
	for n := range cfg.Profiles {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == cfg.DefaultProfile) != (names[j] == cfg.DefaultProfile) {
			return names[i] == cfg.DefaultProfile
		}
		return names[i] < names[j]
	})
	var out []*issuance.Profile
	for _, n := range names {
		p, err := issuance.NewProfile(n, cfg.Profiles[n])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func readCertPEM(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// loadOrCreateKey reads the nonce key, or creates the file with 32 random bytes.
// Without a file each process makes its own key: fine for one node.
func loadOrCreateKey(path string) ([]byte, error) {
	if path == "" {
		key := make([]byte, 32)
		rand.Read(key)
		return key, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.Write(key)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if errors.Is(err, os.ErrExist) {
			return loadOrCreateKey(path) // another node created it first
		}
		if err != nil {
			return nil, fmt.Errorf("nonce.key_file: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nonce.key_file: %w", err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("nonce.key_file: %s holds %d bytes; at least 32 are needed", path, len(b))
	}
	return b, nil
}

// run serves until ctx ends, then shuts down gracefully.
func (s *server) run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: s.tlsCert.get, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 3)
	go func() { errc <- httpSrv.ServeTLS(ln, "", "") }()
	var admin *http.Server
	if s.cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin_listen: %w", err)
		}
		admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- admin.Serve(aln) }()
	}
	var pki *http.Server
	if s.cfg.PKI.Listen != "" {
		pln, err := net.Listen("tcp", s.cfg.PKI.Listen)
		if err != nil {
			return fmt.Errorf("pki.listen: %w", err)
		}
		ocspPath := s.cfg.PKI.OCSPPath
		if ocspPath == "" {
			ocspPath = "/ocsp"
		}
		pki = &http.Server{Handler: s.publisher.Handler(ocspPath), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { errc <- pki.Serve(pln) }()
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	go s.publisher.Run(bg)
	go s.ca.Run(bg, time.Second)
	go s.housekeeping(bg)
	go s.tlsCert.renewLoop(bg, s)

	s.log.Info("anvil serving", "directory", s.cfg.BaseURL+"/directory", "listen", ln.Addr().String(), "admin", s.cfg.AdminListen, "pki", s.cfg.PKI.Listen)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	s.log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	httpSrv.Shutdown(shutdownCtx)
	if admin != nil {
		admin.Shutdown(shutdownCtx)
	}
	if pki != nil {
		pki.Shutdown(shutdownCtx)
	}
	cancelBG()
	s.ca.Wait()
	return nil
}

// housekeeping deletes expired nonces, orders and authorizations once an hour,
// on one node at a time.
func (s *server) housekeeping(ctx context.Context) {
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s/%d", host, os.Getpid())
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(last) < time.Hour {
				continue
			}
			ok, err := s.store.TryLease(ctx, "housekeeping", holder, now, 50*time.Minute)
			if err != nil || !ok {
				continue
			}
			last = now
			n, err := s.store.DeleteExpired(ctx, now.Add(-24*time.Hour))
			if err != nil {
				s.log.Error("housekeeping", "error", err)
				continue
			}
			s.log.Info("housekeeping", "deleted_rows", n)
		}
	}
}

func (s *server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		for _, t := range s.tokens {
			if err := t.Check(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", metricsHandler(s))
	// Profiles for operators chasing a slow server; the admin listener must
	// stay private, as its comment in the configuration says.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// validatorAdapter fits the validation package to the protocol core.
type validatorAdapter struct{ v *validation.Validator }

func (a validatorAdapter) Validate(ctx context.Context, ident acme.Identifier, typ, token, keyAuth string) error {
	return convertValidationError(a.v.Validate(ctx, validation.Identifier{Type: ident.Type, Value: ident.Value}, typ, token, keyAuth))
}

func (a validatorAdapter) CheckCAA(ctx context.Context, name string, wildcard bool, accountURI, method string) error {
	return convertValidationError(a.v.CheckCAA(ctx, name, wildcard, accountURI, method))
}

func convertValidationError(err error) error {
	if err == nil {
		return nil
	}
	var p *validation.Problem
	if errors.As(err, &p) {
		retry := p.Type == "connection" || p.Type == "dns" || p.Type == "tls"
		return &acme.ValidationError{Type: p.Type, Detail: p.Detail, Retryable: retry}
	}
	return err
}

// certHolder keeps the server's TLS certificate, swapped on renewal.
type certHolder struct {
	cert atomicCert
}

func (h *certHolder) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.cert.Load(), nil }

func splitNames(names []string) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(strings.TrimSpace(n)); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, strings.ToLower(strings.TrimSpace(n)))
		}
	}
	return dns, ips
}

// buildPublisher makes an OCSP signer per issuer (the issuer's key, or its
// delegated responder's) and the CRL and OCSP publisher.
func (s *server) buildPublisher(ctx context.Context, issuers []*issuance.Issuer) (*revocation.Publisher, error) {
	var signers []*issuance.OCSPSigner
	for i, iss := range issuers {
		ic := s.cfg.Issuers[i]
		var respCert *x509.Certificate
		var respKey *hsm.Key
		if r := ic.OCSPResponder; r != nil {
			path := fmt.Sprintf("issuers[%d].ocsp_responder", i)
			c, err := readCertPEM(r.Certificate)
			if err != nil {
				return nil, fmt.Errorf("%s.certificate: %w", path, err)
			}
			u, err := hsm.ParseURI(r.Key)
			if err != nil {
				return nil, fmt.Errorf("%s.key: %w", path, err)
			}
			tok, err := s.tokenFor(u)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if respKey, err = tok.FindKey(u.KeyRef()); err != nil {
				return nil, fmt.Errorf("%s.key: %w", path, err)
			}
			respCert = c
		}
		var signer *issuance.OCSPSigner
		var err error
		if respKey != nil {
			signer, err = iss.NewOCSPSigner(ctx, respCert, respKey)
		} else {
			signer, err = iss.NewOCSPSigner(ctx, nil, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		signers = append(signers, signer)
	}
	host, _ := os.Hostname()
	return revocation.New(ctx, revocation.Config{
		CRLValidity:      s.cfg.PKI.CRLValidity.Duration,
		CRLRegenerate:    s.cfg.PKI.CRLRegenerate.Duration,
		CRLCheckInterval: s.cfg.PKI.CRLCheckInterval.Duration,
		OCSPValidity:     s.cfg.PKI.OCSPValidity.Duration,
		Holder:           fmt.Sprintf("%s/%d", host, os.Getpid()),
		Logger:           s.log,
	}, s.store, signers, s.cfg.PKI.Files)
}
