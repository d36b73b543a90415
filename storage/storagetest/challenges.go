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
