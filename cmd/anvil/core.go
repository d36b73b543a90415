package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync/atomic"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/metrics"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/postgres"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// caConfig is what builds a CA's issuance and revocation publishing: the
// database, the HSM, the issuers, profiles and policy. `anvil serve` has it
// inline when it issues in process; `anvil signer` always has it.
type caConfig struct {
	Database databaseConfig `yaml:"database"`
	HSM      hsmConfig      `yaml:"hsm"`
	Issuers  []issuerConfig `yaml:"issuers"`
	// Profiles are the certificate profiles by name; DefaultProfile is used when
	// an order names none.
	Profiles       map[string]issuance.ProfileConfig `yaml:"profiles"`
	DefaultProfile string                            `yaml:"default_profile"`
	SerialPrefix   int                               `yaml:"serial_prefix"`
	Policy         policy.Config                     `yaml:"policy"`
	PKI            pkiConfig                         `yaml:"pki"`
	Audit          auditConfig                       `yaml:"audit"`
	// NodeID names this process in the ledger and in its leases (default: the
	// host name and the listen address). It must be unique among live nodes
	// and stable across restarts: a node that restarts under it takes its own
	// work back at once.
	NodeID string `yaml:"node_id"`
	listen string // the listen address, for the default NodeID
}

// validateIssuance checks the sections that in-process issuance needs.
func (c *caConfig) validateIssuance(p *config.Problems) {
	c.HSM.validate(p)
	if len(c.Issuers) == 0 {
		p.Addf("issuers", "at least one issuer is required")
	}
	names := map[string]bool{}
	for i, is := range c.Issuers {
		path := fmt.Sprintf("issuers[%d]", i)
		p.Require(path+".name", is.Name)
		p.Require(path+".certificate", is.Certificate)
		p.Require(path+".key", is.Key)
		if names[is.Name] {
			p.Addf(path+".name", "%q is used twice", is.Name)
		}
		names[is.Name] = true
		is.validateCRLShards(p, path)
		if is.Key != "" {
			if _, err := hsm.ParseURI(is.Key); err != nil {
				p.Addf(path+".key", "%v", err)
			}
		}
	}
	if len(c.Profiles) == 0 {
		p.Addf("profiles", "at least one profile is required")
	}
	if c.DefaultProfile != "" {
		if _, ok := c.Profiles[c.DefaultProfile]; !ok {
			p.Addf("default_profile", "%q is not among the profiles", c.DefaultProfile)
		}
	}
	if c.SerialPrefix < 0 || c.SerialPrefix > 0x7f {
		p.Addf("serial_prefix", "must be between 1 and 127")
	}
}

// validateShared checks the sections every command of a CA reads the same
// way, whether or not it issues: database, audit, pki.
func (c *caConfig) validateShared(p *config.Problems) {
	c.Database.validate(p)
	c.Audit.validate(p)
	c.PKI.validate(p)
}

// core is an open database and, when the process issues, the HSM tokens, the
// issuers, the issuance service and the revocation publisher.
type core struct {
	cfg         *caConfig
	log         *slog.Logger
	store       storage.Store
	tokens      []*hsm.Token
	tokenByName map[string]*hsm.Token
	issuers     []*issuance.Issuer
	profiles    []*issuance.Profile
	rules       *policy.Rules
	svc         *issuance.Service
	publisher   *revocation.Publisher
	metrics     *metrics.Metrics
	audit       audit.Recorder // audit.Discard without an audit section
	// hsmAudit is audit for the tokens' event hooks, which run on their own
	// goroutines and may fire before the audit log is open.
	hsmAudit atomic.Pointer[audit.Recorder]
	closers  []func()
}

// openCore opens the database and, with issue set, everything issuance needs.
// Anything wrong in the configuration or the HSM stops it here.
func openCore(ctx context.Context, cfg *caConfig, logger *slog.Logger, issue bool) (_ *core, err error) {
	c := &core{cfg: cfg, log: logger, metrics: metrics.New()}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.rules, err = policy.New(cfg.Policy); err != nil {
		return nil, err
	}
	if c.store, err = openStore(ctx, cfg.Database); err != nil {
		return nil, err
	}
	store := c.store
	c.closers = append(c.closers, func() { store.Close() })
	c.store = instrumentStore(store, c.metrics)
	if c.audit, err = c.openAudit(&cfg.Audit, cfg.Audit.path()); err != nil {
		return nil, err
	}
	c.hsmAudit.Store(&c.audit)
	store.SetLeaseHolder(cfg.nodeID())
	if !issue {
		return c, nil
	}
	if c.issuers, err = c.loadIssuers(ctx); err != nil {
		return nil, err
	}
	if c.profiles, err = buildProfiles(cfg); err != nil {
		return nil, err
	}
	if c.svc, err = issuance.NewService(issuance.ServiceConfig{
		Issuers: c.issuers, Profiles: c.profiles, DefaultProfile: cfg.DefaultProfile,
		Ledger: auditedLedger{ledger.Issuance{Store: c.store, Holder: cfg.nodeID()}, c.audit, logger}, Policy: c.rules,
		SerialPrefix: byte(cfg.SerialPrefix), Logger: logger, Observer: c.metrics,
	}); err != nil {
		return nil, err
	}
	if c.publisher, err = c.buildPublisher(ctx, c.issuers); err != nil {
		return nil, err
	}
	observePublisher(c.metrics, c.store, c.publisher, c.issuers, cfg.PKI.Files)
	c.metrics.SetCertificates(caCertificates(c.issuers, cfg.PKI.Files))
	return c, nil
}

func (c *core) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// resolvedDSN is the DSN itself or the one in the environment variable named.
func (c databaseConfig) resolvedDSN() (string, error) {
	if c.DSNEnv == "" {
		return c.DSN, nil
	}
	dsn := os.Getenv(c.DSNEnv)
	if dsn == "" {
		return "", fmt.Errorf("database.dsn_env: %s is not set", c.DSNEnv)
	}
	return dsn, nil
}

func openStore(ctx context.Context, c databaseConfig) (storage.Store, error) {
	dsn, err := c.resolvedDSN()
	if err != nil {
		return nil, err
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
func (s *core) loadIssuers(ctx context.Context) ([]*issuance.Issuer, error) {
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
		cert, err := config.ReadCertificate(ic.Certificate)
		if err != nil {
			return nil, fmt.Errorf("%s.certificate: %w", path, err)
		}
		var chain []*x509.Certificate
		for j, f := range ic.Chain {
			c, err := config.ReadCertificate(f)
			if err != nil {
				return nil, fmt.Errorf("%s.chain[%d]: %w", path, j, err)
			}
			chain = append(chain, c)
		}
		iss, err := issuance.NewIssuer(ctx, ic.Name, cert, timeKey(key, s.metrics), issuance.URLs{IssuerURL: ic.IssuerURL, OCSPURL: ic.OCSPURL, CRLURL: ic.CRLURL, CRLShards: ic.CRLShards}, chain...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for j, files := range ic.AlternateChains {
			var alt []*x509.Certificate
			for _, f := range files {
				c, err := config.ReadCertificate(f)
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
func (s *core) tokenFor(u *hsm.URI) (*hsm.Token, error) {
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
		OnEvent: s.auditHSMEvent,
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
func buildProfiles(cfg *caConfig) ([]*issuance.Profile, error) {
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

// buildPublisher makes an OCSP signer per issuer (the issuer's key, or its
// delegated responder's) and the CRL and OCSP publisher.
func (s *core) buildPublisher(ctx context.Context, issuers []*issuance.Issuer) (*revocation.Publisher, error) {
	var signers []*issuance.OCSPSigner
	for i, iss := range issuers {
		ic := s.cfg.Issuers[i]
		var respCert *x509.Certificate
		var respKey *hsm.Key
		if r := ic.OCSPResponder; r != nil {
			path := fmt.Sprintf("issuers[%d].ocsp_responder", i)
			c, err := config.ReadCertificate(r.Certificate)
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
			signer, err = iss.NewOCSPSigner(ctx, respCert, timeKey(respKey, s.metrics))
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
		Audit:            s.audit,
		Logger:           s.log,
	}, s.store, signers, s.cfg.PKI.Files)
}

// hsmAuditTypes names each token event in the audit log.
var hsmAuditTypes = map[string]string{
	hsm.EventDown:                 audit.HSMTokenDown,
	hsm.EventRecovered:            audit.HSMTokenRecovered,
	hsm.EventLoginRefused:         audit.HSMLoginRefused,
	hsm.EventSignatureCheckFailed: audit.HSMSignatureBad,
}

// auditHSMEvent records a token event in the audit log. It finds the log when
// the event happens, not when the token opens, because the audit log opens
// after the first token; and it does not wait, because the event may fire
// inside the audit key's own signature at a checkpoint.
func (s *core) auditHSMEvent(ev hsm.Event) {
	r := s.hsmAudit.Load()
	if r == nil {
		return
	}
	data := map[string]any{"token": ev.Token}
	if ev.Key != "" {
		data["key"] = ev.Key
	}
	if ev.Err != nil {
		data["error"] = ev.Err.Error()
	}
	typ, ok := hsmAuditTypes[ev.Kind]
	if !ok {
		typ = "hsm." + ev.Kind
	}
	audit.Async(*r, audit.Event{Type: typ, Data: data})
}
