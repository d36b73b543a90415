package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/signer"
	"github.com/anvil-pki/anvil/validation"
)

func init() {
	register("serve", "run the ACME server", runServe)
}

func runServe(args []string) error {
	if err := refuseKnobEnv(); err != nil {
		return err
	}
	var cfg serveConfig
	ctx, stop, err := startDaemon("serve", args, &cfg)
	if err != nil {
		return err
	}
	defer stop()
	logger := installLogger(cfg.Log)

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
	*core
	cfg       *serveConfig
	ca        *acme.Core
	api       *api.Server
	handler   http.Handler // api, with the ACME v1 front end mounted when enabled
	tlsCert   *certHolder
	tlsIssuer *issuance.Service
	// devHandler, set by `anvil dev`, serves the rest of the admin listener
	// (the CA certificates, CRLs and OCSP, as Pebble's management interface).
	devHandler http.Handler
	// ready, when set, is called once every listener is open.
	ready func()
}

// buildServer opens the database and, unless a remote signer issues, the HSM
// and the issuers; then it wires the protocol core to the API. Anything wrong
// in the configuration, the HSM or the signer stops it here, before a port is
// opened.
func buildServer(ctx context.Context, cfg *serveConfig, logger *slog.Logger) (_ *server, err error) {
	var unlock func()
	if cfg.Database.Driver == "sqlite" {
		path, err := cfg.Database.resolvedDSN()
		if err != nil {
			return nil, err
		}
		if unlock, err = lockSQLiteServe(path); err != nil {
			return nil, err
		}
	}
	cfg.caConfig.listen = cfg.Listen
	c, err := openCore(ctx, &cfg.caConfig, logger, cfg.Signer == nil)
	if err != nil {
		if unlock != nil {
			unlock()
		}
		return nil, err
	}
	if unlock != nil {
		c.closers = append(c.closers, unlock)
	}
	c.closers = append(c.closers, reloginOnSIGHUP(c.tokens, logger))
	s := &server{core: c, cfg: cfg}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	var issuer acme.Issuer
	onRevoke := func(string) {}
	if cfg.Signer != nil {
		client, err := signer.NewClient(ctx, signer.ClientConfig{URL: cfg.Signer.URL, CertFile: cfg.Signer.Cert, KeyFile: cfg.Signer.Key, CAFile: cfg.Signer.CA})
		if err != nil {
			return nil, fmt.Errorf("signer: %w", err)
		}
		issuer = instrumentedSigner{client, c.metrics}
	} else {
		issuer = acme.LocalIssuer{Service: c.svc}
		onRevoke = c.publisher.Revoked
	}

	v, err := validation.New(cfg.Validation)
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	nonces, err := nonceSource(cfg, logger, c.store)
	if err != nil {
		return nil, err
	}
	var validator acme.Validator = validatorAdapter{v}
	nonces, validator, skipReuse := cfg.knobs.apply(nonces, validator, logger)
	var apiServer *api.Server
	ca, err := acme.New(acme.Config{
		Policy:                  c.rules,
		ChallengeTypes:          cfg.ACME.ChallengeTypes,
		OrderLifetime:           cfg.ACME.OrderLifetime.Duration,
		PendingAuthzLifetime:    cfg.ACME.PendingAuthzLife.Duration,
		ValidAuthzLifetime:      cfg.ACME.ValidAuthzLife.Duration,
		MaxIdentifiers:          cfg.ACME.MaxIdentifiers,
		TermsOfService:          cfg.ACME.TermsOfService,
		InlineValidation:        cfg.ACME.InlineValidation.Or(5 * time.Second),
		ValidationAttempts:      cfg.ACME.ValidationAttempts,
		RetryBackoff:            cfg.ACME.RetryBackoff.Duration,
		ValidationLease:         cfg.ACME.ValidationLease.Duration,
		CAA:                     !cfg.Validation.DisableCAA,
		CAARecheckAfter:         cfg.ACME.CAARecheckAfter.Duration,
		ReuseAuthorizations:     cfg.ACME.ReuseAuthorizations == nil || *cfg.ACME.ReuseAuthorizations,
		SkipReuse:               skipReuse,
		PreAuthorization:        cfg.ACME.PreAuthorization,
		LegacySimpleHTTPS:       cfg.Legacy.Enabled && cfg.Legacy.SimpleHTTPS,
		ExternalAccountRequired: cfg.ACME.ExternalAccountRequired,
		OrdersPerPage:           cfg.ACME.OrdersPerPage,
		RateLimits: acme.RateLimits{
			NewOrdersPerAccount:      cfg.ACME.RateLimits.NewOrdersPerAccount.limit(),
			NewAccountsPerIP:         cfg.ACME.RateLimits.NewAccountsPerIP.limit(),
			FailedValidationsPerName: cfg.ACME.RateLimits.FailedValidationsPerName.limit(),
		},
		AccountURL: func(id string) string { return apiServer.AccountURL(id) },
		OnRevoke:   onRevoke,
		Audit:      c.audit,
		Logger:     logger,

		OnRateLimited: func(limit string) { c.metrics.RateLimited.WithLabelValues(limit).Inc() },
	}, c.store, issuer, instrumentedValidator{validator, c.metrics})
	if err != nil {
		return nil, err
	}
	s.ca = ca
	if err := s.recoverAtStart(ctx); err != nil {
		return nil, err
	}
	apiServer, err = api.New(api.Config{
		BaseURL:                 cfg.BaseURL,
		Core:                    ca,
		Nonces:                  nonces,
		MaxBodyBytes:            cfg.ACME.MaxBodyBytes,
		Website:                 cfg.ACME.Website,
		CAAIdentities:           cfg.ACME.CAAIdentities,
		ExternalAccountRequired: cfg.ACME.ExternalAccountRequired,
		PreAuthorization:        cfg.ACME.PreAuthorization,
		Logger:                  logger,
		Observer:                c.metrics,
	})
	if err != nil {
		return nil, err
	}
	s.api = apiServer
	if s.handler, err = withLegacy(cfg, ca, nonces, apiServer, logger); err != nil {
		return nil, err
	}

	if s.tlsCert, err = s.ensureTLSCertificate(ctx, c.issuers, c.profiles); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return s, nil
}

// nonceSource picks where nonces are redeemed. On SQLite this process is the
// only front end, and keeps them in memory: a write per request saved, and
// nonces from before a restart refused. On PostgreSQL every front end redeems
// in the shared database, under the shared key.
func nonceSource(cfg *serveConfig, logger *slog.Logger, store api.NonceStore) (api.NonceSource, error) {
	if cfg.Database.Driver == "sqlite" {
		if cfg.Nonce.KeyFile != "" {
			logger.Warn("nonce.key_file is not used with SQLite: this process is the only front end and keeps its nonces in memory", "key_file", cfg.Nonce.KeyFile)
		}
		return api.NewLocalNonces(cfg.Nonce.Lifetime.Duration), nil
	}
	key, err := loadOrCreateKey(cfg.Nonce.KeyFile)
	if err != nil {
		return nil, err
	}
	return api.NewNonces(key, cfg.Nonce.Lifetime.Duration, store)
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
	l := newListeners(s.log)
	defer l.shutdown()
	addr, err := l.listen("listen", s.cfg.Listen, &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: s.tlsCert.get, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		return err
	}
	if err := s.openShared(l, s.cfg.AdminListen, s.devHandler); err != nil {
		return err
	}
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	s.runDuties(bg)
	go s.ca.Run(bg, time.Second)
	go s.housekeeping(bg)
	go s.tlsCert.renewLoop(bg, s)

	if s.ready != nil {
		s.ready()
	}
	s.log.Info("anvil serving", "directory", s.cfg.BaseURL+"/directory", "listen", addr.String(), "admin", s.cfg.AdminListen, "pki", s.cfg.PKI.Listen)
	if err := l.wait(ctx); err != nil {
		return err
	}
	s.log.Info("shutting down")
	l.shutdown()
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

// adminHandler serves /health, /metrics and pprof on the admin listener;
// extra, when set, serves every other path (`anvil dev`'s management paths).
func (c *core) adminHandler(extra http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		// Each token's known state, never a call into the module: a hung HSM
		// must not hang the health check (a hang shows once sign_timeout cuts
		// it), and a health probe costs no HSM work.
		var b strings.Builder
		status := http.StatusOK
		for _, t := range c.tokens {
			h := t.Health()
			if h.State != hsm.HealthOK {
				status = http.StatusServiceUnavailable
			}
			fmt.Fprintf(&b, "token %s: %s\n", t.Label(), h)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprint(w, "ok\n")
		}
		fmt.Fprint(w, b.String())
	})
	mux.Handle("/metrics", metricsHandler(c))
	// Profiles for operators chasing a slow server; the admin listener must
	// stay private, as its comment in the configuration says.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if extra != nil {
		mux.Handle("/", extra)
	}
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
	// validation's problem types are RFC 8555's; acme decides by them which
	// failures are retried (acme.ValidationError.Retryable).
	var p *validation.Problem
	if errors.As(err, &p) {
		return &acme.ValidationError{Type: p.Type, Detail: p.Detail}
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
