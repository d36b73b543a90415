package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// CheckDeleteExpired checks DeleteExpired on s, which must be empty. It is
// exported so that an implementation can run it again with settings of its
// own (small delete batches, say).
func CheckDeleteExpired(t *testing.T, s storage.Store) {
	ctx := t.Context()
	cutoff := base
	past, future := at(-time.Hour), at(time.Hour)

	must(t, s.RedeemNonce(ctx, "stale", at(-time.Second)), "RedeemNonce")
	must(t, s.RedeemNonce(ctx, "at-cutoff", cutoff), "RedeemNonce")
	must(t, s.RedeemNonce(ctx, "fresh", future), "RedeemNonce")

	acct := createAccount(t, s, "key-a")
	authz := func(id string, expires time.Time, challenges int) *storage.Authorization {
		z := newAuthz(id, acct.ID, dns(id+".example"), "valid", expires)
		z.Challenges = z.Challenges[:challenges]
		return z
	}
	order := func(id, status string, expires time.Time, serial string, authzs ...*storage.Authorization) {
		o := newOrder(id, acct.ID, status, authzs...)
		o.Expires, o.CertSerial = expires, serial
		var fresh []*storage.Authorization
		for _, z := range authzs {
			if _, err := s.GetAuthorization(ctx, z.ID); err != nil {
				fresh = append(fresh, z)
			}
		}
		must(t, s.CreateOrder(ctx, o, fresh), "CreateOrder "+id)
	}
	for name, until := range map[string]time.Time{"lease-ended": past, "lease-held": future} {
		ok, err := s.TryLease(ctx, name, "node-1", until, 0)
		if err != nil || !ok {
			t.Fatalf("TryLease %s: %v %v", name, ok, err)
		}
	}
	reserve(t, s, "live", "r1", "valid-live", base, at(30*day), true)
	reserve(t, s, "dead", "r1", "valid-dead", at(-90*day), past, true)

	shared := authz("shared", past, 1) // expired, but a kept order still refers to it
	order("expired-pending", "pending", past, "", authz("gone-1", past, 2), shared)
	order("fresh", "pending", future, "", authz("kept-fresh", future, 1), shared)
	order("valid-live", "valid", past, "live", authz("kept-live", at(-2*time.Hour), 1))
	order("valid-dead", "valid", past, "dead", authz("gone-2", past, 1))
	order("invalid", "invalid", past, "", authz("gone-3", at(-time.Minute), 0))
	order("at-cutoff", "pending", cutoff, "", authz("kept-at-cutoff", cutoff, 1))

	// Gone: 1 nonce; orders expired-pending, valid-dead, invalid;
	// authorizations gone-1, gone-2, gone-3 with 2+1+0 challenges; 1 lease.
	const wantGone = 1 + 3 + 3 + 3 + 1
	n, err := s.DeleteExpired(ctx, cutoff)
	must(t, err, "DeleteExpired")
	if n != wantGone {
		t.Errorf("DeleteExpired removed %d rows, want %d", n, wantGone)
	}

	// Nonces are visible only through redemption: a deleted one is new again.
	must(t, s.RedeemNonce(ctx, "stale", future), "redeeming a deleted nonce")
	wantErr(t, s.RedeemNonce(ctx, "at-cutoff", future), storage.ErrConflict, "nonce expiring at the cutoff")
	wantErr(t, s.RedeemNonce(ctx, "fresh", future), storage.ErrConflict, "unexpired nonce")

	for _, id := range []string{"expired-pending", "valid-dead", "invalid"} {
		_, err := s.GetOrder(ctx, id)
		wantErr(t, err, storage.ErrNotFound, "deleted order "+id)
	}
	for _, id := range []string{"fresh", "valid-live", "at-cutoff"} {
		_, err := s.GetOrder(ctx, id)
		must(t, err, "kept order "+id)
	}
	for _, id := range []string{"gone-1", "gone-2", "gone-3"} {
		_, err := s.GetAuthorization(ctx, id)
		wantErr(t, err, storage.ErrNotFound, "deleted authorization "+id)
	}
	for _, id := range []string{"gone-1-http", "gone-1-dns", "gone-2-http"} {
		_, err := s.GetChallenge(ctx, id)
		wantErr(t, err, storage.ErrNotFound, "deleted challenge "+id)
	}
	for _, id := range []string{"shared", "kept-fresh", "kept-live", "kept-at-cutoff"} {
		z, err := s.GetAuthorization(ctx, id)
		must(t, err, "kept authorization "+id)
		if len(z.Challenges) != 1 {
			t.Errorf("kept authorization %s has %d challenges, want 1", id, len(z.Challenges))
		}
	}
	for _, serial := range []string{"live", "dead"} {
		_, err := s.GetCertificate(ctx, serial)
		must(t, err, "the ledger is never cleaned: "+serial)
	}
	_, err = s.GetAccount(ctx, acct.ID)
	must(t, err, "accounts are never cleaned")
	if ok, err := s.TryLease(ctx, "lease-held", "node-2", base, time.Minute); err != nil || ok {
		t.Errorf("a lease held past the cutoff was taken by another node after cleanup: %v %v", ok, err)
	}

	n, err = s.DeleteExpired(ctx, cutoff)
	must(t, err, "DeleteExpired again")
	if n != 0 {
		t.Errorf("DeleteExpired again removed %d rows, want 0", n)
	}
}
