// Package storage owns Anvil's durable state: ACME accounts, orders,
// authorizations and challenges, used nonces, the issuance ledger (reserved
// serials, lint certificates, issued certificates), revocations, External
// Account Binding keys, and the leases that let several front ends share work.
//
// The rest of Anvil codes against the Store interface. Two implementations stand
// behind it with the same behaviour, checked by one conformance suite
// (storage/storagetest): SQLite, the embedded default, and PostgreSQL, for
// several front ends. Every state change that can race is a conditional update
// (compare-and-set on the current status) or an insert under a unique
// constraint, never a read followed by a write: a lost race is ErrConflict.
//
// storage knows nothing of HTTP, JWS or certificates' contents; it stores what it
// is given. Times are stored in UTC and round-trip at microsecond precision.
package storage

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when no record matches.
var ErrNotFound = errors.New("storage: not found")

// ErrConflict is returned when a unique constraint or a conditional update
// fails: the record exists already, or its status is no longer the expected one.
var ErrConflict = errors.New("storage: conflict")

// Identifier is an ACME identifier.
type Identifier struct {
	Type  string `json:"type"` // "dns" or "ip"
	Value string `json:"value"`
}

// Account is an ACME account.
type Account struct {
	ID          string
	KeyID       string // RFC 7638 SHA-256 thumbprint of the account key, base64url; unique
	Key         []byte // the public JWK, JSON
	Contact     []string
	Status      string // "valid", "deactivated", "revoked"
	TermsAgreed bool
	EABKeyID    string // the External Account Binding key used, "" if none
	CreatedIP   string // for per-IP rate limits
	CreatedAt   time.Time
}

// Order is an ACME order.
type Order struct {
	ID          string
	AccountID   string
	Status      string // "pending", "ready", "processing", "valid", "invalid"
	Identifiers []Identifier
	AuthzIDs    []string
	Profile     string
	NotBefore   time.Time // requested; zero if none
	NotAfter    time.Time // requested; zero if none
	Expires     time.Time
	Error       []byte // RFC 7807 problem JSON; nil if none
	CSR         []byte // DER, stored at finalize so another node can finish it
	CertSerial  string // lowercase hex; "" until issued
	Replaces    string // ARI certificate identifier this order replaces; "" if none
	LeaseUntil  time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Authorization is an ACME authorization with its challenges.
type Authorization struct {
	ID         string
	AccountID  string
	Identifier Identifier
	Wildcard   bool
	Status     string // "pending", "valid", "invalid", "deactivated", "expired", "revoked"
	Expires    time.Time
	Challenges []*Challenge
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Challenge is one way to prove control of an authorization's identifier. The
// scheduling fields let validation run asynchronously, be retried, and be taken
// over by another node if the one running it dies.
type Challenge struct {
	ID          string
	AuthzID     string
	Type        string // "http-01", "dns-01", "tls-alpn-01"
	Token       string
	Status      string // "pending", "processing", "valid", "invalid"
	Validated   time.Time
	Error       []byte // problem JSON; nil if none
	Attempts    int
	NextAttempt time.Time // when the next validation attempt is due
	LeaseUntil  time.Time // a node is validating it until then
	UpdatedAt   time.Time
}

// Certificate is one serial in the issuance ledger: reserved first, then its
// lint certificate recorded as the intent to sign, then exactly one outcome:
// issued (with the signed certificate), not signed (with the reason), or
// abandoned (the process ended in between; published as revoked).
type Certificate struct {
	Serial    string // lowercase hex; primary key
	Issuer    string
	Profile   string
	OrderID   string // the order it was issued for ("" for none)
	LintDER   []byte // nil until the intent is recorded
	DER       []byte // nil until issued
	CreatedAt time.Time
	Expires   time.Time // NotAfter of the certificate
	RevokedAt time.Time // zero unless revoked
	Reason    int       // CRL reason code when revoked
	// Holder is the node that wrote the intent ("" when unknown): on
	// PostgreSQL an open intent whose holder's node lease ran out is abandoned.
	Holder        string
	Outcome       string // "" while open, else one of the Outcome constants
	OutcomeReason string // why not signed: one of the NotSigned constants
	// CRLShard is the issuer's CRL shard the certificate is listed in when
	// revoked, fixed when the serial is reserved: its URL is in the
	// certificate. 0 for rows from before sharding, and for unsharded issuers.
	CRLShard int
}

// Ledger outcomes. Every ledger row ends in exactly one of them.
const (
	// OutcomeIssued: the certificate was signed, verified and stored.
	OutcomeIssued = "issued"
	// OutcomeNotSigned: no valid signature left the HSM; OutcomeReason says why.
	OutcomeNotSigned = "not_signed"
	// OutcomeAbandoned: the process ended between intent and outcome, so a
	// signature may exist. The serial is revoked with
	// ReasonCessationOfOperation, so that it is published in CRLs and OCSP.
	OutcomeAbandoned = "abandoned"
)

// Reasons of OutcomeNotSigned.
const (
	// NotSignedHSMError: the HSM call returned an error (a timeout included).
	NotSignedHSMError = "hsm_error"
	// NotSignedBadSignature: the HSM's signature failed verification.
	NotSignedBadSignature = "bad_signature"
	// NotSignedNoIntent: the serial was reserved but its intent never written,
	// so the HSM was never asked.
	NotSignedNoIntent = "no_intent"
)

// ReasonCessationOfOperation is the CRL reason (RFC 5280 5.3.1) of abandoned
// serials.
const ReasonCessationOfOperation = 5

// LedgerCount is the number of ledger rows of one issuer with one outcome
// (and reason).
type LedgerCount struct {
	Issuer  string
	Outcome string // "" for open intents
	Reason  string
	Count   int64
}

// OpenIntent is a ledger row without an outcome.
type OpenIntent struct {
	Serial    string
	Issuer    string
	OrderID   string
	Holder    string
	CreatedAt time.Time
	HasIntent bool // the lint certificate was recorded
	// HolderLive: the holder's node lease is live, so the row may be in flight.
	HolderLive bool
}

// Revoked is one revoked certificate, for CRLs.
type Revoked struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
	Expires   time.Time
}

// CRL is the latest CRL of an issuer's shard, generated by one node and
// served by all.
type CRL struct {
	Issuer     string
	Shard      int   // 0 for an unsharded issuer
	Number     int64 // CRL number; each new CRL's is greater
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
}

// ShardRevocations is how many certificates of one CRL shard are revoked,
// and when the latest was.
type ShardRevocations struct {
	Shard  int
	Count  int
	Latest time.Time
}

// EABKey is an External Account Binding MAC key.
type EABKey struct {
	ID              string // the key identifier given to the client
	Key             []byte // the HMAC key
	Algorithm       string // "HS256", "HS384", "HS512"
	Comment         string
	AllowedSuffixes []string // names accounts bound with it may order; empty = no restriction
	AccountID       string   // "" until bound
	Revoked         bool
	CreatedAt       time.Time
}

// AuthzLookup is one identifier of FindValidAuthorizations: the identifier
// without any "*." and whether the authorization sought is a wildcard's.
type AuthzLookup struct {
	Identifier Identifier
	Wildcard   bool
}

// Store is Anvil's durable state.
type Store interface {
	// RedeemNonce records nonce as used until expires. A nonce redeemed before
	// returns ErrConflict: one nonce, one use, whichever node sees it.
	RedeemNonce(ctx context.Context, nonce string, expires time.Time) error

	// CreateAccount inserts a; ErrConflict if an account has a.KeyID.
	CreateAccount(ctx context.Context, a *Account) error
	GetAccount(ctx context.Context, id string) (*Account, error)
	GetAccountByKeyID(ctx context.Context, keyID string) (*Account, error)
	// UpdateAccount writes Contact, Status and TermsAgreed of a, if its status
	// is still fromStatus; ErrConflict otherwise.
	UpdateAccount(ctx context.Context, a *Account, fromStatus string) error
	// RolloverAccountKey replaces the key of account id if its current key is
	// oldKeyID; ErrConflict if newKeyID is another account's key or the current
	// key is no longer oldKeyID.
	RolloverAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, newKey []byte) error
	// CountAccountsByIP counts accounts created from ip since a time.
	CountAccountsByIP(ctx context.Context, ip string, since time.Time) (int, error)

	// CreateOrder inserts o and the new authorizations (with their challenges)
	// in one transaction. o.AuthzIDs may also name existing authorizations
	// being reused.
	CreateOrder(ctx context.Context, o *Order, newAuthzs []*Authorization) error
	GetOrder(ctx context.Context, id string) (*Order, error)
	// UpdateOrder writes Status, Error, CSR, CertSerial and LeaseUntil of o if its
	// status is still fromStatus; ErrConflict otherwise. This is how exactly one
	// of many concurrent finalizes wins the ready -> processing change.
	UpdateOrder(ctx context.Context, o *Order, fromStatus string) error
	// ListOrderIDs pages through an account's order IDs, newest first. cursor is
	// "" for the first page; the returned cursor is "" after the last.
	ListOrderIDs(ctx context.Context, accountID, cursor string, limit int) (ids []string, next string, err error)
	// CountOrders counts orders the account created since a time.
	CountOrders(ctx context.Context, accountID string, since time.Time) (int, error)
	// OrdersReplacing returns the orders whose Replaces is certID (RFC 9773).
	OrdersReplacing(ctx context.Context, certID string) ([]*Order, error)
	// ClaimOrders leases up to limit orders in "processing" whose lease ended
	// before now, setting their lease to now+lease: finalizes whose node died.
	ClaimOrders(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*Order, error)

	// CreateAuthorization inserts an authorization with its challenges outside
	// any order (RFC 8555 7.4.1 pre-authorization).
	CreateAuthorization(ctx context.Context, a *Authorization) error
	GetAuthorization(ctx context.Context, id string) (*Authorization, error)
	GetAuthorizations(ctx context.Context, ids []string) ([]*Authorization, error)
	// FindValidAuthorization returns the account's valid authorization for ident
	// that expires latest, if it expires after validUntil; ErrNotFound otherwise.
	FindValidAuthorization(ctx context.Context, accountID string, ident Identifier, wildcard bool, validUntil time.Time) (*Authorization, error)
	// FindValidAuthorizations is FindValidAuthorization for each of lookups in
	// one query, so that a newOrder's database work does not grow with its
	// identifiers: out[i] answers lookups[i], nil when there is none.
	FindValidAuthorizations(ctx context.Context, accountID string, lookups []AuthzLookup, validUntil time.Time) ([]*Authorization, error)
	// UpdateAuthorization writes Status and Expires of a if its status is still
	// fromStatus; ErrConflict otherwise.
	UpdateAuthorization(ctx context.Context, a *Authorization, fromStatus string) error
	// CountFailedAuthorizations counts authorizations for ident that became
	// invalid since a time, across accounts.
	CountFailedAuthorizations(ctx context.Context, ident Identifier, since time.Time) (int, error)
	// CountFailedAuthorizationsEach is CountFailedAuthorizations for each of
	// idents in one query: out[i] counts idents[i].
	CountFailedAuthorizationsEach(ctx context.Context, idents []Identifier, since time.Time) ([]int, error)

	GetChallenge(ctx context.Context, id string) (*Challenge, error)
	// UpdateChallenge writes Status, Validated, Error, Attempts, NextAttempt and
	// LeaseUntil of c if its status is still fromStatus; ErrConflict otherwise.
	UpdateChallenge(ctx context.Context, c *Challenge, fromStatus string) error
	// RecordValidation writes a validation's outcome in one transaction: c as
	// UpdateChallenge does, if its status is still fromChallenge, and a as
	// UpdateAuthorization does, if its status is still fromAuthz. If either is
	// not as expected, neither is written: ErrConflict (ErrNotFound for a
	// missing record).
	RecordValidation(ctx context.Context, c *Challenge, fromChallenge string, a *Authorization, fromAuthz string) error
	// ClaimChallenges leases up to limit challenges in "processing" that are due
	// (NextAttempt <= now) and not leased (LeaseUntil < now), setting their lease
	// to now+lease. Validation retries and validations whose node died.
	ClaimChallenges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*Challenge, error)

	// The issuance ledger. ReserveSerial inserts Serial, Issuer, Profile,
	// OrderID, CreatedAt, Expires, Holder and, if set, LintDER: the reservation
	// and the intent to sign in one durable write. ErrConflict for a serial
	// reserved before.
	ReserveSerial(ctx context.Context, c *Certificate) error
	// RecordLintCertificate stores the lint certificate of a reserved serial
	// that has none; ErrConflict otherwise, ErrNotFound if never reserved.
	RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error
	// RecordIssuedCertificate stores the certificate of a serial with a lint
	// certificate and no outcome, and closes it as issued; ErrConflict
	// otherwise (an abandoned serial is revoked: it is never issued after).
	RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error
	// RecordNotSigned closes an intent without an outcome as not signed, for
	// reason (a NotSigned constant); ErrConflict if it has an outcome or no
	// intent, ErrNotFound if never reserved.
	RecordNotSigned(ctx context.Context, serial, reason string) error
	// AbandonIntents closes the intents without an outcome of holder ("" for
	// every holder): as abandoned and revoked at `at` with
	// ReasonCessationOfOperation. Reservations without an intent are closed as
	// not signed (NotSignedNoIntent). It is for a process that knows those
	// rows' writer is dead: at start on SQLite, or a node restarting under its
	// own identity. It returns how many rows were abandoned.
	AbandonIntents(ctx context.Context, holder string, at time.Time) (int64, error)
	// AbandonIntent closes one open intent as AbandonIntents does: for a
	// signature that exists but could not be recorded. ErrConflict if it has
	// an outcome or no intent, ErrNotFound if never reserved.
	AbandonIntent(ctx context.Context, serial string, at time.Time) error
	// AbandonOrphanedIntents is AbandonIntents for the open rows whose holder
	// holds no live lease named leasePrefix+holder at `at`: a sweep for nodes
	// that died.
	AbandonOrphanedIntents(ctx context.Context, leasePrefix string, at time.Time) (int64, error)
	// LedgerCounts counts ledger rows per issuer, outcome and reason.
	LedgerCounts(ctx context.Context) ([]LedgerCount, error)
	// OpenIntents lists the ledger rows without an outcome, oldest first,
	// saying whether their holder's lease leasePrefix+holder is live at now.
	OpenIntents(ctx context.Context, leasePrefix string, now time.Time) ([]OpenIntent, error)
	GetCertificate(ctx context.Context, serial string) (*Certificate, error)
	// CertificatesForOrder returns every ledger entry for an order, oldest first.
	CertificatesForOrder(ctx context.Context, orderID string) ([]*Certificate, error)
	// RevokeCertificate marks an issued certificate revoked; ErrConflict if it
	// already is, ErrNotFound if it was never issued.
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason int) error

	// PutCRL stores c as its issuer's current CRL if its number is greater than
	// the stored one's; ErrConflict otherwise (another node published a newer one).
	PutCRL(ctx context.Context, c *CRL) error

	// ListRevokedShard lists the revoked certificates of one CRL shard of the
	// issuer that expire after expiresAfter, ordered by serial: read from an
	// index that holds every column of an entry.
	ListRevokedShard(ctx context.Context, issuer string, shard int, expiresAfter time.Time) ([]Revoked, error)
	// RevocationsByShard reports, for each shard of the issuer that has a
	// revoked certificate, how many are revoked and when the latest was, so
	// that a CRL publisher can tell cheaply which CRLs are stale.
	RevocationsByShard(ctx context.Context, issuer string) ([]ShardRevocations, error)
	// GetCRLShard returns the issuer's current CRL of one shard; ErrNotFound
	// if none was published.
	GetCRLShard(ctx context.Context, issuer string, shard int) (*CRL, error)
	// CRLHeads returns the issuer's stored CRLs, one per shard, by shard,
	// without their DER: what a publisher needs to tell which are stale.
	CRLHeads(ctx context.Context, issuer string) ([]CRL, error)

	CreateEABKey(ctx context.Context, k *EABKey) error // ErrConflict if the ID exists
	GetEABKey(ctx context.Context, id string) (*EABKey, error)
	ListEABKeys(ctx context.Context) ([]*EABKey, error)
	// RevokeEABKey marks the key revoked: it binds no further accounts.
	RevokeEABKey(ctx context.Context, id string) error
	// BindEABKey binds an unbound, unrevoked key to an account; ErrConflict if
	// it is bound already or revoked. A key binds at most one account.
	BindEABKey(ctx context.Context, id, accountID string) error

	// TryLease takes or renews the named lease for holder until now+ttl, if it is
	// free, expired, or already held by holder. Scheduled jobs (CRLs, cleanup)
	// run only on the node that holds their lease.
	TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// TryLeaseAndCertificates is TryLease, then CertificatesForOrder(orderID)
	// as seen after the lease is taken (every certificate its previous holder
	// recorded before releasing it), in one round trip where the database
	// allows: the signer's start of an issuance. If the read fails, the lease
	// is not taken.
	TryLeaseAndCertificates(ctx context.Context, name, holder string, now time.Time, ttl time.Duration, orderID string) (bool, []*Certificate, error)
	// ReleaseLease ends the named lease if holder holds it; nothing otherwise.
	ReleaseLease(ctx context.Context, name, holder string) error
	// ReleaseAllLeases ends every lease at once: named leases, and the leases
	// of orders and challenges in processing, which become due at once. It is
	// for a process that owns the database alone and has just started (SQLite:
	// the serve lock), whose dead predecessor held them; it returns how many
	// orders and challenges it freed.
	ReleaseAllLeases(ctx context.Context) (int64, error)
	// SetLeaseHolder names this process (its node identity) in every lease it
	// writes from now on on orders and challenges: UpdateOrder,
	// UpdateChallenge, RecordValidation, ClaimOrders and ClaimChallenges.
	SetLeaseHolder(holder string)
	// ReleaseLeasesOf frees the orders and challenges in processing whose
	// lease holder names: they become due at once. It is for a node that
	// restarts under its own identity and takes its own work back.
	ReleaseLeasesOf(ctx context.Context, holder string) (int64, error)

	// DeleteExpired removes used nonces, orders and authorizations (with their
	// challenges) that expired before cutoff, and leases that ended before it,
	// and reports how many rows went.
	// Orders that reached "valid" are kept while their certificate is unexpired.
	DeleteExpired(ctx context.Context, cutoff time.Time) (int64, error)

	Close() error
}
