package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// The fixtures build complete records (every field set, times at microsecond
// precision in UTC), so that a round trip can be checked with one comparison.

func dns(name string) storage.Identifier { return storage.Identifier{Type: "dns", Value: name} }

// newAccount returns an account for keyID, not yet stored.
func newAccount(keyID string) *storage.Account {
	return &storage.Account{
		ID:          "acct-" + keyID,
		KeyID:       keyID,
		Key:         []byte(`{"kty":"EC","crv":"P-256","x":"` + keyID + `"}`),
		Contact:     []string{"mailto:" + keyID + "@example.com", "mailto:ops@example.com"},
		Status:      "valid",
		TermsAgreed: true,
		EABKeyID:    "eab-" + keyID,
		CreatedIP:   "192.0.2.10",
		CreatedAt:   base,
	}
}

// createAccount stores newAccount(keyID).
func createAccount(t *testing.T, s storage.Store, keyID string) *storage.Account {
	t.Helper()
	a := newAccount(keyID)
	must(t, s.CreateAccount(t.Context(), a), "CreateAccount "+keyID)
	return a
}

// newAuthz returns an authorization of account for ident with an http-01 and a
// dns-01 challenge, not yet stored.
func newAuthz(id, accountID string, ident storage.Identifier, status string, expires time.Time) *storage.Authorization {
	return &storage.Authorization{
		ID:         id,
		AccountID:  accountID,
		Identifier: ident,
		Status:     status,
		Expires:    expires,
		Challenges: []*storage.Challenge{
			newChallenge(id+"-http", id, "http-01"),
			newChallenge(id+"-dns", id, "dns-01"),
		},
		CreatedAt: base,
		UpdatedAt: base,
	}
}

// newChallenge returns a pending challenge of authzID.
func newChallenge(id, authzID, typ string) *storage.Challenge {
	return &storage.Challenge{
		ID:        id,
		AuthzID:   authzID,
		Type:      typ,
		Token:     "token-" + id,
		Status:    "pending",
		UpdatedAt: base,
	}
}

// newOrder returns an order of account for the authorizations' identifiers,
// not yet stored.
func newOrder(id, accountID, status string, authzs ...*storage.Authorization) *storage.Order {
	o := &storage.Order{
		ID:        id,
		AccountID: accountID,
		Status:    status,
		Profile:   "tlsserver",
		NotBefore: at(time.Hour),
		NotAfter:  at(90 * day),
		Expires:   at(7 * day),
		CreatedAt: base,
		UpdatedAt: base,
	}
	for _, a := range authzs {
		o.Identifiers = append(o.Identifiers, a.Identifier)
		o.AuthzIDs = append(o.AuthzIDs, a.ID)
	}
	return o
}

// storeAuthzs stores authorizations through an order of the first one's
// account: the interface creates authorizations only with an order.
func storeAuthzs(t *testing.T, s storage.Store, orderID string, authzs ...*storage.Authorization) *storage.Order {
	t.Helper()
	o := newOrder(orderID, authzs[0].AccountID, "pending", authzs...)
	must(t, s.CreateOrder(t.Context(), o, authzs), "CreateOrder "+orderID)
	return o
}

// reserve stores a ledger entry for serial with a lint certificate and, if
// issued, a certificate.
func reserve(t *testing.T, s storage.Store, serial, issuer, orderID string, created, expires time.Time, issued bool) *storage.Certificate {
	t.Helper()
	c := &storage.Certificate{
		Serial: serial, Issuer: issuer, Profile: "tlsserver", OrderID: orderID,
		CreatedAt: created, Expires: expires,
	}
	ctx := t.Context()
	must(t, s.ReserveSerial(ctx, c), "ReserveSerial "+serial)
	c.LintDER = []byte("lint-" + serial)
	must(t, s.RecordLintCertificate(ctx, serial, c.LintDER), "RecordLintCertificate "+serial)
	if issued {
		c.DER = []byte("cert-" + serial)
		c.Outcome = storage.OutcomeIssued
		must(t, s.RecordIssuedCertificate(ctx, serial, c.DER), "RecordIssuedCertificate "+serial)
	}
	return c
}

// clone returns a copy of o that shares nothing mutable with it, for
// goroutines that each update "the same" order.
func clone(o *storage.Order) *storage.Order {
	c := *o
	c.Identifiers = append([]storage.Identifier(nil), o.Identifiers...)
	c.AuthzIDs = append([]string(nil), o.AuthzIDs...)
	return &c
}

func name(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }
