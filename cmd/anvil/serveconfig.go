package main

import (
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/validation"
)

// serveConfig is the YAML file of `anvil serve`.
type serveConfig struct {
	// Listen is the ACME listener (HTTPS), e.g. 127.0.0.1:14000.
	Listen string `yaml:"listen"`
	// BaseURL is how clients reach it, e.g. https://localhost:14000. Every JWS
	// url is checked against it.
	BaseURL string    `yaml:"base_url"`
	TLS     tlsConfig `yaml:"tls"`
	// AdminListen serves /metrics and /health (plain HTTP; keep it private).
	AdminListen string `yaml:"admin_listen"`
	// The CA: database, HSM, issuers, profiles, policy, pki. With signer set,
	// only the database (and policy) are used here: the signer has the rest.
	caConfig `yaml:",inline"`
	// Signer, when set, sends issuance to an `anvil signer` over mutual TLS
	// instead of signing in this process.
	Signer     *signerClientConfig `yaml:"signer"`
	ACME       acmeConfig          `yaml:"acme"`
	Validation validation.Config   `yaml:"validation"`
	Nonce      nonceConfig         `yaml:"nonce"`
	Log        logConfig           `yaml:"log"`

	// Legacy is the ACME v1 front end (legacy.go); off unless enabled.
	Legacy legacyConfig `yaml:"legacy"`

	// knobs are `anvil dev`'s test knobs. Unexported, so no YAML key reaches
	// them: only runDev sets them (devknobs.go).
	knobs devKnobs
}

type signerClientConfig struct {
	URL  string `yaml:"url"`
	Cert string `yaml:"cert"` // this front end's client certificate
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"` // the CA of the signer's certificate
}

type tlsConfig struct {
	Cert string `yaml:"cert"` // PEM certificate chain
	Key  string `yaml:"key"`  // PEM private key of the server (not a CA key)
	// IssueFor, when set, has the server issue its own TLS certificate for these
	// names from its own issuer at start, and renew it when a third of its life
	// is left, writing Cert and Key. For development hierarchies.
	IssueFor []string `yaml:"issue_for"`
	// Profile is the profile used for IssueFor.
	Profile string `yaml:"profile"`
}

type databaseConfig struct {
	Driver string `yaml:"driver"` // sqlite or postgres
	// DSN is a file path for sqlite, a connection string for postgres.
	DSN string `yaml:"dsn"`
	// DSNEnv names an environment variable holding the DSN, to keep passwords
	// out of files.
	DSNEnv string `yaml:"dsn_env"`
}

type hsmConfig struct {
	Module      string          `yaml:"module"`
	PIN         hsm.PINSource   `yaml:"pin"`
	MaxSessions int             `yaml:"max_sessions"`
	SessionWait config.Duration `yaml:"session_wait"`
	SignTimeout config.Duration `yaml:"sign_timeout"`
}

type issuerConfig struct {
	Name        string   `yaml:"name"`
	Certificate string   `yaml:"certificate"` // PEM issuer certificate
	Chain       []string `yaml:"chain"`       // PEM certificates above it, root excluded
	Key         string   `yaml:"key"`         // RFC 7512 PKCS#11 URI of its key
	IssuerURL   string   `yaml:"issuer_url"`
	OCSPURL     string   `yaml:"ocsp_url"`
	CRLURL      string   `yaml:"crl_url"`
	// CRLShards partitions the issuer's CRL (default 1: one CRL at crl_url);
	// see issuance.MaxCRLShards and docs/README.md.
	CRLShards int `yaml:"crl_shards"`
	// OCSPResponder, when set, signs this issuer's OCSP responses instead of its
	// own key: a delegated responder certificate from the ceremony and its key.
	OCSPResponder *responderConfig `yaml:"ocsp_responder"`
	// AlternateChains are other chains to offer after a leaf (Link
	// rel="alternate"), each a list of PEM files starting with this issuer's
	// certificate or a cross-signed twin of it.
	AlternateChains [][]string `yaml:"alternate_chains"`
}

type responderConfig struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"` // PKCS#11 URI
}

// pkiConfig is the plain-HTTP listener for CRLs, OCSP and CA certificates.
type pkiConfig struct {
	Listen   string `yaml:"listen"`
	OCSPPath string `yaml:"ocsp_path"` // default /ocsp
	// Files maps URL paths to files served as DER: the root certificate, the
	// offline root's CRL.
	Files            map[string]string `yaml:"files"`
	CRLValidity      config.Duration   `yaml:"crl_validity"`
	CRLRegenerate    config.Duration   `yaml:"crl_regenerate"`
	CRLCheckInterval config.Duration   `yaml:"crl_check_interval"`
	OCSPValidity     config.Duration   `yaml:"ocsp_validity"`
}

type acmeConfig struct {
	TermsOfService     string          `yaml:"terms_of_service"`
	Website            string          `yaml:"website"`
	CAAIdentities      []string        `yaml:"caa_identities"`
	ChallengeTypes     []string        `yaml:"challenge_types"`
	OrderLifetime      config.Duration `yaml:"order_lifetime"`
	PendingAuthzLife   config.Duration `yaml:"pending_authorization_lifetime"`
	ValidAuthzLife     config.Duration `yaml:"valid_authorization_lifetime"`
	MaxIdentifiers     int             `yaml:"max_identifiers"`
	InlineValidation   config.Duration `yaml:"inline_validation"`
	ValidationAttempts int             `yaml:"validation_attempts"`
	RetryBackoff       config.Duration `yaml:"retry_backoff"`
	// ValidationLease is how long a node may work on a validation or a
	// finalize before another node takes it over (default 1m).
	ValidationLease config.Duration `yaml:"validation_lease"`
	MaxBodyBytes    int64           `yaml:"max_body_bytes"`
	// ReuseAuthorizations lets new orders use valid authorizations (default true).
	ReuseAuthorizations     *bool            `yaml:"reuse_authorizations"`
	PreAuthorization        bool             `yaml:"pre_authorization"`
	ExternalAccountRequired bool             `yaml:"external_account_required"`
	CAARecheckAfter         config.Duration  `yaml:"caa_recheck_after"`
	OrdersPerPage           int              `yaml:"orders_per_page"`
	RateLimits              rateLimitsConfig `yaml:"rate_limits"`
}

type limitConfig struct {
	Count  int             `yaml:"count"`
	Period config.Duration `yaml:"period"`
}

type rateLimitsConfig struct {
	NewOrdersPerAccount      limitConfig `yaml:"new_orders_per_account"`
	NewAccountsPerIP         limitConfig `yaml:"new_accounts_per_ip"`
	FailedValidationsPerName limitConfig `yaml:"failed_validations_per_name"`
}

func (l limitConfig) limit() acme.Limit { return acme.Limit{Count: l.Count, Period: l.Period.Duration} }

type nonceConfig struct {
	// KeyFile holds the nonce MAC key (at least 32 bytes), shared by every
	// front end on PostgreSQL. It is created with a random key if it does not
	// exist. On SQLite nonces stay in the one process, under a key it makes.
	KeyFile  string          `yaml:"key_file"`
	Lifetime config.Duration `yaml:"lifetime"`
}

type logConfig struct {
	Format string `yaml:"format"` // text or json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// Validate checks the file; every problem names its YAML path.
func (c *serveConfig) Validate() error {
	var p config.Problems
	p.Require("listen", c.Listen)
	p.Require("base_url", c.BaseURL)
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p.Addf("base_url", "%q must be scheme://host[:port] with no path", c.BaseURL)
		}
		c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	}
	if c.TLS.Cert == "" || c.TLS.Key == "" {
		p.Addf("tls", "cert and key are required (with issue_for, they are where the issued certificate is kept)")
	}
	c.validateShared(&p)
	c.Log.validate(&p)
	if c.Signer != nil {
		p.Require("signer.url", c.Signer.URL)
		p.Require("signer.cert", c.Signer.Cert)
		p.Require("signer.key", c.Signer.Key)
		p.Require("signer.ca", c.Signer.CA)
		if len(c.Issuers) > 0 || c.HSM.Module != "" || len(c.Profiles) > 0 || c.PKI.Listen != "" {
			p.Addf("signer", "with a signer, hsm, issuers, profiles and pki belong in the signer's configuration, not here")
		}
		if len(c.TLS.IssueFor) > 0 {
			p.Addf("tls.issue_for", "only a server that issues in process can issue its own certificate; give cert and key")
		}
	} else {
		c.validateIssuance(&p)
		if c.TLS.Profile != "" {
			if _, ok := c.Profiles[c.TLS.Profile]; !ok {
				p.Addf("tls.profile", "%q is not among the profiles", c.TLS.Profile)
			}
		}
	}
	if err := c.Validation.Validate(); err != nil {
		p.Addf("validation", "%v", err)
	}
	if c.Legacy.SimpleHTTPS && !c.Legacy.Enabled {
		p.Addf("legacy.simple_https", "needs legacy.enabled: true")
	}
	return p.Err()
}

// The checks of the sections `serve` and `signer` share live on their types,
// so that the two commands cannot drift apart (config_test.go holds them to
// it: TestSharedSectionsRefusedByBoth).

// validate checks the database section.
func (d databaseConfig) validate(p *config.Problems) {
	switch d.Driver {
	case "sqlite", "postgres":
	case "":
		p.Addf("database.driver", "is required (sqlite or postgres)")
	default:
		p.Addf("database.driver", "%q: want sqlite or postgres", d.Driver)
	}
	if (d.DSN == "") == (d.DSNEnv == "") {
		p.Addf("database.dsn", "give exactly one of dsn and dsn_env")
	}
}

// validate checks the hsm section, for a process that signs.
func (h hsmConfig) validate(p *config.Problems) {
	p.Require("hsm.module", h.Module)
	if h.PIN.IsZero() {
		p.Addf("hsm.pin", "give file or env")
	}
	if h.MaxSessions == 1 || h.MaxSessions < 0 {
		p.Addf("hsm.max_sessions", "must be at least 2: every session counts, one holds the login and the others sign")
	}
}

// validate checks the pki section. The bounds hold wherever CRLs are
// published: in `serve` issuing in process and in `signer`.
func (k pkiConfig) validate(p *config.Problems) {
	if k.CRLValidity.Duration > 10*24*time.Hour {
		p.Addf("pki.crl_validity", "%s is longer than the 10 days the Baseline Requirements allow a subscriber CRL", k.CRLValidity)
	}
}

// validate checks the log section.
func (l logConfig) validate(p *config.Problems) {
	switch l.Format {
	case "", "text", "json":
	default:
		p.Addf("log.format", "%q: want text or json", l.Format)
	}
	if l.Level != "" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(l.Level)); err != nil {
			p.Addf("log.level", "%q: want debug, info, warn or error", l.Level)
		}
	}
}
