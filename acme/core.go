package acme

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/storage"
)

// Identifier is an ACME identifier.
type Identifier = storage.Identifier

// Challenge types.
const (
	HTTP01    = "http-01"
	DNS01     = "dns-01"
	TLSALPN01 = "tls-alpn-01"
)

// Statuses of RFC 8555 7.1.6.
const (
	StatusPending     = "pending"
	StatusReady       = "ready"
	StatusProcessing  = "processing"
	StatusValid       = "valid"
	StatusInvalid     = "invalid"
	StatusDeactivated = "deactivated"
	StatusExpired     = "expired"
	StatusRevoked     = "revoked"
)

// Issuer is what the protocol core needs of the issuance service, in process or
// across the network.
type Issuer interface {
	Issue(ctx context.Context, req issuance.Request) (*issuance.Issued, error)
	// Chains returns the chains of DER certificates to serve after a leaf of the
	// issuer: the default first, then alternates.
	Chains(issuer string) ([][][]byte, bool)
	// ProfileNames lists the certificate profiles, default first.
	ProfileNames() []ProfileInfo
}

// ProfileInfo names a certificate profile for meta.profiles.
type ProfileInfo struct {
	Name        string
	Description string
}

// Validator proves control of identifiers. Errors it returns that are
// *ValidationError carry the problem type to show the client.
type Validator interface {
	Validate(ctx context.Context, ident Identifier, challengeType, token, keyAuthorization string) error
	CheckCAA(ctx context.Context, name string, wildcard bool, accountURI, method string) error
}

// ContactReporter is a Validator that can also say which addresses a
// validation contacted (ip:port), for the audit log.
type ContactReporter interface {
	ValidateContacted(ctx context.Context, ident Identifier, challengeType, token, keyAuthorization string) ([]string, error)
}

// ValidationError is a failed validation as the client will see it: an RFC 8555
// error type (without namespace) and a detail.
type ValidationError struct {
	Type   string
	Detail string
}

func (e *ValidationError) Error() string { return e.Type + ": " + e.Detail }

// The RFC 8555 6.7 error types of a validation that failed to reach the
// applicant's server at all.
const (
	ProblemConnection = "connection"
	ProblemDNS        = "dns"
	ProblemTLS        = "tls"
)

// Retryable says whether the validation is tried again (up to
// Config.ValidationAttempts) before the challenge becomes invalid. Only a
// failure to reach the applicant's server (connection, dns, tls) may pass on a
// second try a few seconds later; an answer that was wrong (incorrectResponse,
// unauthorized) or a CAA refusal stands, and retrying it would only delay the
// client's next order. acme decides this by the RFC 8555 type, the one
// vocabulary it shares with whichever validator cmd/anvil wires in.
func (e *ValidationError) Retryable() bool {
	switch e.Type {
	case ProblemConnection, ProblemDNS, ProblemTLS:
		return true
	}
	return false
}

// Config tunes the protocol core.
type Config struct {
	Policy         *policy.Rules
	ChallengeTypes []string // enabled challenge types; default http-01, dns-01, tls-alpn-01

	OrderLifetime        time.Duration // default 7 days
	PendingAuthzLifetime time.Duration // default 7 days
	ValidAuthzLifetime   time.Duration // default 30 days
	MaxIdentifiers       int           // per order; default 100

	TermsOfService string // URL; when set, newAccount must agree to it

	// InlineValidation is how long a challenge response waits for its
	// validation before answering "processing": clients that see "valid" at once
	// skip polling. Zero validates only in the background.
	InlineValidation time.Duration
	// ValidationAttempts is how often a retryable failure is tried (default 3),
	// RetryBackoff the pause before the second attempt, doubling after. It is
	// also how soon a finalize whose outcome is unknown is asked about again.
	ValidationAttempts int
	RetryBackoff       time.Duration
	// ValidationLease is how long a node may work on a challenge or finalize
	// before another node may take it over.
	ValidationLease time.Duration
	// MaxConcurrentValidations bounds validations in flight on this node.
	MaxConcurrentValidations int
	// CAA turns CAA checking on (RFC 8659); off for closed internal networks.
	CAA bool
	// CAARecheckAfter: at finalize, CAA is checked again for names validated
	// longer ago than this (default 8 hours, as the Baseline Requirements ask).
	CAARecheckAfter time.Duration

	// ReuseAuthorizations lets a new order use the account's valid
	// authorization for a name instead of asking for a new validation.
	ReuseAuthorizations bool
	// SkipReuse, when set, is asked before each reuse and vetoes it when it
	// says true: `anvil dev`'s PEBBLE_AUTHZREUSE knob, so that client tests
	// see fresh authorizations for a chosen share of orders. Nil in
	// `anvil serve`, which cannot set it.
	SkipReuse func() bool
	// PreAuthorization offers newAuthz (RFC 8555 7.4.1).
	PreAuthorization bool
	// LegacySimpleHTTPS offers the seed's simpleHttps challenge in the
	// authorizations of the ACME v1 front end (LegacyAuthorize), and only there.
	LegacySimpleHTTPS bool
	// ExternalAccountRequired refuses new accounts without an External Account
	// Binding (RFC 8555 7.3.4).
	ExternalAccountRequired bool
	// OrdersPerPage is the page size of an account's orders list (default 50).
	OrdersPerPage int
	// RateLimits protect the CA and its HSM; zero limits are off.
	RateLimits RateLimits
	// OnRevoke, when set, is told the issuer of each revoked certificate (the
	// CRL publisher regenerates soon after).
	OnRevoke func(issuer string)
	// OnRateLimited, when set, is told the name of each rate limit that
	// refuses a request (metrics): new_orders_per_account,
	// new_accounts_per_ip, failed_validations_per_name.
	OnRateLimited func(limit string)

	// Audit records security events (accounts, validations, issuance,
	// revocation) before the response that depends on them; default none.
	Audit Auditor

	// AccountURL builds an account's URL, which CAA accounturi names.
	AccountURL func(id string) string
	Now        func() time.Time
	Logger     *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.OrderLifetime, 7*24*time.Hour)
	def(&c.PendingAuthzLifetime, 7*24*time.Hour)
	def(&c.ValidAuthzLifetime, 30*24*time.Hour)
	def(&c.RetryBackoff, 2*time.Second)
	def(&c.ValidationLease, time.Minute)
	def(&c.CAARecheckAfter, 8*time.Hour)
	if c.OrdersPerPage <= 0 {
		c.OrdersPerPage = 50
	}
	if c.MaxIdentifiers <= 0 {
		c.MaxIdentifiers = 100
	}
	if c.ValidationAttempts <= 0 {
		c.ValidationAttempts = 3
	}
	if c.MaxConcurrentValidations <= 0 {
		c.MaxConcurrentValidations = 64
	}
	if len(c.ChallengeTypes) == 0 {
		c.ChallengeTypes = []string{HTTP01, DNS01, TLSALPN01}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Audit == nil {
		c.Audit = audit.Discard
	}
	if c.AccountURL == nil {
		c.AccountURL = func(id string) string { return id }
	}
}

// Auditor is what the protocol core needs of the audit log: one call per
// event, returning once the line is written (and synced as configured).
type Auditor interface {
	Record(ctx context.Context, ev audit.Event) error
}

// record writes an audit event; a failure becomes serverInternal, so that no
// response goes out for an event the audit log does not hold.
func (ca *Core) record(ctx context.Context, typ string, data map[string]any) error {
	if err := ca.cfg.Audit.Record(ctx, audit.Event{Type: typ, Data: data}); err != nil {
		return ServerInternal(err, "the audit log could not record the event")
	}
	return nil
}

// Core is the protocol core: it decides on accounts, orders, authorizations,
// challenges, finalization and revocation (what Boulder calls the RA). It
// signs nothing itself: the issuance service behind Issuer (package issuance,
// the HSM) does. The front ends, api and api/legacy, each see it through the
// interface they declare.
type Core struct {
	cfg       Config
	store     storage.Store
	issuer    Issuer
	validator Validator
	log       *slog.Logger

	validations chan struct{} // semaphore of validations in flight
	wg          sync.WaitGroup
	keys        keyCache
	recent      recentCertificates
}

// New assembles the protocol core.
func New(cfg Config, store storage.Store, issuer Issuer, validator Validator) (*Core, error) {
	if store == nil || issuer == nil || validator == nil {
		return nil, errors.New("acme: store, issuer and validator are all required")
	}
	if cfg.Policy == nil {
		return nil, errors.New("acme: no identifier policy")
	}
	cfg.setDefaults()
	for _, t := range cfg.ChallengeTypes {
		if t != HTTP01 && t != DNS01 && t != TLSALPN01 {
			return nil, fmt.Errorf("acme: unknown challenge type %q", t)
		}
	}
	return &Core{
		cfg:         cfg,
		store:       store,
		issuer:      issuer,
		validator:   validator,
		log:         cfg.Logger,
		validations: make(chan struct{}, cfg.MaxConcurrentValidations),
	}, nil
}

// TermsOfService returns the terms URL, "" if none.
func (ca *Core) TermsOfService() string { return ca.cfg.TermsOfService }

// Profiles lists the certificate profiles.
func (ca *Core) Profiles() []ProfileInfo { return ca.issuer.ProfileNames() }

func (ca *Core) challengeEnabled(t string) bool {
	return slices.Contains(ca.cfg.ChallengeTypes, t) || (t == SimpleHTTPS && ca.cfg.LegacySimpleHTTPS)
}

func (ca *Core) now() time.Time { return ca.cfg.Now().UTC().Truncate(time.Microsecond) }

// Run does the background work until ctx ends: validation retries, challenges
// and finalizes orphaned by a node that died. Wait returns when it is done.
func (ca *Core) Run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	// At once first: after a restart, work released by recovery resumes now.
	ca.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			ca.sweep(ctx)
		}
	}
}

// sweep claims due challenges and stuck finalizes once.
func (ca *Core) sweep(ctx context.Context) {
	now := ca.now()
	chs, err := ca.store.ClaimChallenges(ctx, now, ca.cfg.ValidationLease, cap(ca.validations))
	if err != nil {
		ca.log.Error("claim challenges", "error", err)
	}
	for _, ch := range chs {
		ca.startValidation(ch, nil, nil)
	}
	orders, err := ca.store.ClaimOrders(ctx, now, ca.cfg.ValidationLease, 16)
	if err != nil {
		ca.log.Error("claim orders", "error", err)
	}
	for _, o := range orders {
		ca.resumeFinalize(ctx, o)
	}
}

// Wait blocks until background validations started by this core have finished.
func (ca *Core) Wait() { ca.wg.Wait() }

// storeErr turns a storage failure into a problem.
func storeErr(err error, what string) *Problem {
	if errors.Is(err, storage.ErrNotFound) {
		return NotFound("no such %s", what)
	}
	return ServerInternal(err, "storage error reading %s", what)
}
