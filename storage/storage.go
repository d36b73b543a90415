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
// lint certificate recorded as the intent to sign, then the signed certificate.
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
}

// Revoked is one revoked certificate, for CRLs.
type Revoked struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
	Expires   time.Time
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

	GetAuthorization(ctx context.Context, id string) (*Authorization, error)
	GetAuthorizations(ctx context.Context, ids []string) ([]*Authorization, error)
	// FindValidAuthorization returns the account's valid authorization for ident
	// that expires latest, if it expires after validUntil; ErrNotFound otherwise.
	FindValidAuthorization(ctx context.Context, accountID string, ident Identifier, wildcard bool, validUntil time.Time) (*Authorization, error)
	// UpdateAuthorization writes Status and Expires of a if its status is still
	// fromStatus; ErrConflict otherwise.
	UpdateAuthorization(ctx context.Context, a *Authorization, fromStatus string) error
	// CountFailedAuthorizations counts authorizations for ident that became
	// invalid since a time, across accounts.
	CountFailedAuthorizations(ctx context.Context, ident Identifier, since time.Time) (int, error)

	GetChallenge(ctx context.Context, id string) (*Challenge, error)
	// UpdateChallenge writes Status, Validated, Error, Attempts, NextAttempt and
	// LeaseUntil of c if its status is still fromStatus; ErrConflict otherwise.
	UpdateChallenge(ctx context.Context, c *Challenge, fromStatus string) error
	// ClaimChallenges leases up to limit challenges in "processing" that are due
	// (NextAttempt <= now) and not leased (LeaseUntil < now), setting their lease
	// to now+lease. Validation retries and validations whose node died.
	ClaimChallenges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*Challenge, error)

	// The issuance ledger. ReserveSerial inserts Serial, Issuer, Profile,
	// OrderID, CreatedAt and Expires; ErrConflict for a serial reserved before.
	ReserveSerial(ctx context.Context, c *Certificate) error
	// RecordLintCertificate stores the lint certificate of a reserved serial
	// that has none; ErrConflict otherwise, ErrNotFound if never reserved.
	RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error
	// RecordIssuedCertificate stores the certificate of a serial with a lint
	// certificate and no certificate; ErrConflict otherwise.
	RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error
	GetCertificate(ctx context.Context, serial string) (*Certificate, error)
	// CertificatesForOrder returns every ledger entry for an order, oldest first.
	CertificatesForOrder(ctx context.Context, orderID string) ([]*Certificate, error)
	// RevokeCertificate marks an issued certificate revoked; ErrConflict if it
	// already is, ErrNotFound if it was never issued.
	RevokeCertificate(ctx context.Context, serial string, at time.Time, reason int) error
	// ListRevoked lists the issuer's revoked certificates that expire after
	// expiresAfter, ordered by serial.
	ListRevoked(ctx context.Context, issuer string, expiresAfter time.Time) ([]Revoked, error)

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

	// DeleteExpired removes used nonces, orders and authorizations (with their
	// challenges) that expired before cutoff, and reports how many rows went.
	// Orders that reached "valid" are kept while their certificate is unexpired.
	DeleteExpired(ctx context.Context, cutoff time.Time) (int64, error)

	Close() error
}
