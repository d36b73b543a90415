package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testChallenges(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	a := newAuthz("authz-1", acct.ID, dns("example.com"), "pending", at(7*day))
	storeAuthzs(t, s, "order-1", a)
	c := a.Challenges[0]

	got, err := s.GetChallenge(ctx, c.ID)
	must(t, err, "GetChallenge")
	same(t, "GetChallenge", got, c)
	_, err = s.GetChallenge(ctx, "no-such-challenge")
	wantErr(t, err, storage.ErrNotFound, "GetChallenge of an unknown ID")

	// The client answers: validation is scheduled.
	proc := *c
	proc.Status = "processing"
	proc.Attempts = 1
	proc.NextAttempt = at(time.Minute)
	proc.LeaseUntil = at(2 * time.Minute)
	proc.UpdatedAt = at(30 * time.Second)
	// Fields UpdateChallenge does not write.
	proc.Type = "forged"
	proc.Token = "forged"
	proc.AuthzID = "forged"
	must(t, s.UpdateChallenge(ctx, &proc, "pending"), "UpdateChallenge pending -> processing")
	want := *c
	want.Status, want.Attempts, want.NextAttempt, want.LeaseUntil, want.UpdatedAt =
		proc.Status, proc.Attempts, proc.NextAttempt, proc.LeaseUntil, proc.UpdatedAt
	got, err = s.GetChallenge(ctx, c.ID)
	must(t, err, "GetChallenge")
	same(t, "processing challenge", got, &want)

	wantErr(t, s.UpdateChallenge(ctx, &proc, "pending"), storage.ErrConflict, "UpdateChallenge from a stale status")
	missing := proc
	missing.ID = "no-such-challenge"
	wantErr(t, s.UpdateChallenge(ctx, &missing, "processing"), storage.ErrNotFound, "UpdateChallenge of an unknown ID")

	// A failed attempt, then success.
	retry := want
	retry.Attempts = 2
	retry.Error = []byte(`{"type":"urn:ietf:params:acme:error:connection"}`)
	retry.NextAttempt = at(5 * time.Minute)
	retry.LeaseUntil = time.Time{}
	retry.UpdatedAt = at(time.Minute)
	must(t, s.UpdateChallenge(ctx, &retry, "processing"), "UpdateChallenge processing -> processing")
	valid := retry
	valid.Status = "valid"
	valid.Validated = at(6 * time.Minute)
	valid.Error = nil
	valid.UpdatedAt = at(6 * time.Minute)
	must(t, s.UpdateChallenge(ctx, &valid, "processing"), "UpdateChallenge processing -> valid")

	// The authorization shows the challenge as it now is, the other untouched.
	wantAuthz := *a
	wantAuthz.Challenges = []*storage.Challenge{&valid, a.Challenges[1]}
	gotAuthz, err := s.GetAuthorization(ctx, a.ID)
	must(t, err, "GetAuthorization")
	same(t, "authorization after its challenge was validated", gotAuthz, &wantAuthz)
}

// testRecordValidation: a validation's outcome writes the challenge and its
// authorization together, or, if either is no longer as expected, neither.
func testRecordValidation(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	processing := func(a *storage.Authorization) *storage.Challenge {
		t.Helper()
		c := *a.Challenges[0]
		c.Status, c.LeaseUntil, c.UpdatedAt = "processing", at(time.Minute), at(time.Second)
		must(t, s.UpdateChallenge(ctx, &c, "pending"), "UpdateChallenge pending -> processing")
		return &c
	}
	outcome := func(c *storage.Challenge, a *storage.Authorization) (*storage.Challenge, *storage.Authorization) {
		vc, va := *c, *a
		vc.Status, vc.Validated, vc.Attempts, vc.LeaseUntil, vc.UpdatedAt = "valid", at(2*time.Minute), 1, time.Time{}, at(2*time.Minute)
		va.Status, va.Expires, va.UpdatedAt = "valid", at(30*day), at(2*time.Minute)
		va.Challenges = []*storage.Challenge{&vc, a.Challenges[1]}
		return &vc, &va
	}
	unchanged := func(what string, a *storage.Authorization, c *storage.Challenge) {
		t.Helper()
		want := *a
		want.Challenges = []*storage.Challenge{c, a.Challenges[1]}
		got, err := s.GetAuthorization(ctx, a.ID)
		must(t, err, "GetAuthorization")
		same(t, what, got, &want)
	}

	// Both as expected: both written.
	a := newAuthz("authz-1", acct.ID, dns("one.example.com"), "pending", at(7*day))
	storeAuthzs(t, s, "order-1", a)
	vc, va := outcome(processing(a), a)
	must(t, s.RecordValidation(ctx, vc, "processing", va, "pending"), "RecordValidation")
	got, err := s.GetAuthorization(ctx, a.ID)
	must(t, err, "GetAuthorization")
	same(t, "authorization after RecordValidation", got, va)

	// The authorization was deactivated meanwhile: the challenge stays as it was.
	b := newAuthz("authz-2", acct.ID, dns("two.example.com"), "pending", at(7*day))
	storeAuthzs(t, s, "order-2", b)
	bc := processing(b)
	deact := *b
	deact.Status, deact.UpdatedAt = "deactivated", at(time.Minute)
	must(t, s.UpdateAuthorization(ctx, &deact, "pending"), "UpdateAuthorization pending -> deactivated")
	vc, va = outcome(bc, b)
	wantErr(t, s.RecordValidation(ctx, vc, "processing", va, "pending"), storage.ErrConflict, "RecordValidation on a deactivated authorization")
	deact.Challenges = b.Challenges
	unchanged("challenge and authorization after a conflict on the authorization", &deact, bc)

	// The challenge was recorded by someone else: the authorization stays pending.
	c := newAuthz("authz-3", acct.ID, dns("three.example.com"), "pending", at(7*day))
	storeAuthzs(t, s, "order-3", c)
	cc := processing(c)
	vc, va = outcome(cc, c)
	wantErr(t, s.RecordValidation(ctx, vc, "pending", va, "pending"), storage.ErrConflict, "RecordValidation from a stale challenge status")
	unchanged("challenge and authorization after a conflict on the challenge", c, cc)

	// An unknown authorization: not found, and the challenge stays as it was.
	missing := *va
	missing.ID = "no-such-authz"
	wantErr(t, s.RecordValidation(ctx, vc, "processing", &missing, "pending"), storage.ErrNotFound, "RecordValidation of an unknown authorization")
	unchanged("challenge after RecordValidation of an unknown authorization", c, cc)
}
