package records

import (
	"errors"

	"github.com/anvil-pki/anvil/storage"
)

// The Prepare functions make a record ready to insert, in place, so that after
// a Create* call the caller's record equals what a Get* returns: an empty ID
// gets a fresh one, a zero CreatedAt the store's clock, a zero UpdatedAt the
// CreatedAt; times are reduced with Time and empty slices made nil.

// PrepareAccount prepares a for CreateAccount.
func PrepareAccount(a *storage.Account) error {
	if a.KeyID == "" {
		return errors.New("account has no key ID")
	}
	fillID(&a.ID)
	if a.CreatedAt.IsZero() {
		a.CreatedAt = Now()
	}
	normalizeTimes(&a.CreatedAt)
	a.Key = NilIfEmpty(a.Key)
	a.Contact = NilIfEmpty(a.Contact)
	return nil
}

// PrepareOrder prepares o for CreateOrder.
func PrepareOrder(o *storage.Order) error {
	if o.AccountID == "" {
		return errors.New("order has no account")
	}
	fillID(&o.ID)
	if o.CreatedAt.IsZero() {
		o.CreatedAt = Now()
	}
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = o.CreatedAt
	}
	normalizeTimes(&o.NotBefore, &o.NotAfter, &o.Expires, &o.LeaseUntil, &o.CreatedAt, &o.UpdatedAt)
	o.Identifiers = NilIfEmpty(o.Identifiers)
	o.AuthzIDs = NilIfEmpty(o.AuthzIDs)
	o.Error = NilIfEmpty(o.Error)
	o.CSR = NilIfEmpty(o.CSR)
	return nil
}

// PrepareAuthorization prepares a and its challenges for CreateOrder. The
// challenges are made to point at a, whatever their AuthzID said.
func PrepareAuthorization(a *storage.Authorization) error {
	if a.AccountID == "" {
		return errors.New("authorization has no account")
	}
	fillID(&a.ID)
	if a.CreatedAt.IsZero() {
		a.CreatedAt = Now()
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	normalizeTimes(&a.Expires, &a.CreatedAt, &a.UpdatedAt)
	a.Challenges = NilIfEmpty(a.Challenges)
	for _, c := range a.Challenges {
		if c == nil {
			return errors.New("authorization has a nil challenge")
		}
		c.AuthzID = a.ID
		fillID(&c.ID)
		if c.UpdatedAt.IsZero() {
			c.UpdatedAt = a.UpdatedAt
		}
		normalizeTimes(&c.Validated, &c.NextAttempt, &c.LeaseUntil, &c.UpdatedAt)
		c.Error = NilIfEmpty(c.Error)
	}
	return nil
}

// PrepareCertificate prepares c for ReserveSerial.
func PrepareCertificate(c *storage.Certificate) error {
	if c.Serial == "" {
		return errors.New("certificate has no serial")
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = Now()
	}
	normalizeTimes(&c.CreatedAt, &c.Expires)
	return nil
}

// PrepareEABKey prepares k for CreateEABKey.
func PrepareEABKey(k *storage.EABKey) error {
	if len(k.Key) == 0 {
		return errors.New("EAB key has no key material")
	}
	fillID(&k.ID)
	if k.CreatedAt.IsZero() {
		k.CreatedAt = Now()
	}
	normalizeTimes(&k.CreatedAt)
	k.AllowedSuffixes = NilIfEmpty(k.AllowedSuffixes)
	return nil
}
