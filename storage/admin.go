package storage

import (
	"context"
	"time"
)

// The operator's view of the records: searches, counts and CRL requests for
// `anvil admin`. It is a separate interface from Store because nothing on the
// ACME or issuance path needs it; both drivers implement it and the
// conformance suite checks it (storagetest, admin.go).

// CertificateFilter selects ledger entries. Zero fields match everything;
// set fields must all match.
type CertificateFilter struct {
	Serial    string // lowercase hex, exact
	Issuer    string
	AccountID string // the account of the order the certificate was issued for
	// Name is an identifier value of the order the certificate was issued for
	// ("example.com", "*.example.com", "192.0.2.1"), exact. A certificate's
	// names are its order's identifiers: the issuance service checks that the
	// CSR names exactly those. Orders are kept while their certificate is
	// unexpired, so a search by account or name finds every unexpired
	// certificate; an expired one may be missing once its order is deleted.
	Name string
	// ExpiresAfter and ExpiresBefore bound NotAfter: after < expires <= before.
	ExpiresAfter  time.Time
	ExpiresBefore time.Time
	// IssuedOnly leaves out serials that were reserved but never stored as a
	// signed certificate.
	IssuedOnly bool
	Limit      int // 0: no limit
}

// AccountFilter selects accounts, newest first.
type AccountFilter struct {
	ID      string
	Status  string
	Contact string // one contact URI, exact ("mailto:ops@example.com")
	Limit   int    // 0: no limit
}

// OrderFilter selects orders, newest first.
type OrderFilter struct {
	AccountID string
	Status    string
	Name      string // an identifier value, exact
	Limit     int    // 0: no limit
}

// Counts are the sizes an operator looks at first.
type Counts struct {
	Accounts map[string]int `json:"accounts"` // by status
	Orders   map[string]int `json:"orders"`   // by stored status
	// Certificates by ledger state: "valid" (issued, unexpired, not revoked),
	// "revoked" (unexpired), "expired", "intent" (lint certificate recorded,
	// no certificate stored) and "reserved" (serial only).
	Certificates map[string]int `json:"certificates"`
}

// Admin is what `anvil admin` needs beyond Store.
type Admin interface {
	// ListCertificates returns the ledger entries that match f, newest first.
	ListCertificates(ctx context.Context, f CertificateFilter) ([]*Certificate, error)
	// ListAccounts returns the accounts that match f, newest first.
	ListAccounts(ctx context.Context, f AccountFilter) ([]*Account, error)
	// ListOrders returns the orders that match f, newest first.
	ListOrders(ctx context.Context, f OrderFilter) ([]*Order, error)
	// Counts counts accounts, orders and ledger entries; now divides expired
	// certificates from the others.
	Counts(ctx context.Context, now time.Time) (*Counts, error)
	// RequestCRL asks whichever node publishes the issuer's CRL to make a new
	// one at its next check, even if nothing changed: a request made at "at"
	// is served by a CRL whose thisUpdate is not before it. A later request
	// replaces an earlier one.
	RequestCRL(ctx context.Context, issuer string, at time.Time) error
	// CRLRequested returns the time of the latest request for the issuer's
	// CRL; the zero time if none is recorded.
	CRLRequested(ctx context.Context, issuer string) (time.Time, error)
}

// CRLRequestLease names the row of the leases table that holds a CRL request
// for an issuer. A request is a lease held by "operator" that ended at the
// request time: no node ever holds it, housekeeping deletes it a day later
// (by then every running publisher has served it), and no schema change was
// needed to record it.
func CRLRequestLease(issuer string) string { return "crl-request/" + issuer }
