package storagetest

import (
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// claimConcurrently runs claimers goroutines that each claim up to limit items
// once, at the same now, and returns every ID handed out, sorted, failing t if
// one was handed out twice.
func claimConcurrently(t *testing.T, claimers, limit int, claim func(limit int) ([]string, error)) []string {
	t.Helper()
	var mu sync.Mutex
	var all []string
	errs := race(claimers, func(int) error {
		ids, err := claim(limit)
		if len(ids) > limit {
			t.Errorf("claimed %d, limit %d", len(ids), limit)
		}
		mu.Lock()
		all = append(all, ids...)
		mu.Unlock()
		return err
	})
	for _, err := range errs {
		must(t, err, "claim")
	}
	sort.Strings(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			t.Fatalf("%s was handed out twice within one lease: %v", all[i], all)
		}
	}
	return all
}

func testClaimChallenges(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	now := at(time.Hour)
	const lease = time.Minute

	// Ten due challenges, one due exactly now, and four that are not due.
	var authzs []*storage.Authorization
	var due []string
	set := func(c *storage.Challenge, status string, next, leased time.Time) {
		c.Status, c.NextAttempt, c.LeaseUntil = status, next, leased
	}
	for i := range 10 {
		z := newAuthz(name("due", i), acct.ID, dns(name("due", i)+".example"), "pending", at(7*day))
		set(z.Challenges[0], "processing", at(time.Duration(i)*time.Minute), time.Time{})
		if i == 9 {
			set(z.Challenges[0], "processing", now, at(-time.Minute)) // due now, old lease ended
		}
		due = append(due, z.Challenges[0].ID)
		authzs = append(authzs, z)
	}
	notDue := newAuthz("not-due", acct.ID, dns("a.example"), "pending", at(7*day))
	set(notDue.Challenges[0], "processing", now.Add(time.Second), time.Time{})
	leased := newAuthz("leased", acct.ID, dns("b.example"), "pending", at(7*day))
	set(leased.Challenges[0], "processing", at(0), now.Add(time.Hour))
	leasedUntilNow := newAuthz("leased-until-now", acct.ID, dns("c.example"), "pending", at(7*day))
	set(leasedUntilNow.Challenges[0], "processing", at(0), now) // ends now, not before now
	done := newAuthz("done", acct.ID, dns("d.example"), "valid", at(7*day))
	set(done.Challenges[0], "valid", at(0), time.Time{})
	authzs = append(authzs, notDue, leased, leasedUntilNow, done)
	// The pending challenges of every authorization (Challenges[1]) are not due either.
	storeAuthzs(t, s, "order-1", authzs...)
	sort.Strings(due)

	claim := func(now time.Time) func(limit int) ([]string, error) {
		return func(limit int) ([]string, error) {
			cs, err := s.ClaimChallenges(ctx, now, lease, limit)
			var ids []string
			for _, c := range cs {
				if !c.LeaseUntil.Equal(now.Add(lease)) {
					t.Errorf("claimed %s with lease until %s, want %s", c.ID, c.LeaseUntil, now.Add(lease))
				}
				ids = append(ids, c.ID)
			}
			return ids, err
		}
	}

	got := claimConcurrently(t, 4, 3, claim(now))
	if !slices.Equal(got, due) {
		t.Fatalf("four claimers of 3 claimed %v, want the due %v", got, due)
	}
	if again := claimConcurrently(t, 2, 100, claim(now)); len(again) != 0 {
		t.Fatalf("claimed %v again within the lease", again)
	}
	// When the lease ends exactly now it has not ended before now: only the
	// two that became due meanwhile are handed out.
	atEnd := []string{leasedUntilNow.Challenges[0].ID, notDue.Challenges[0].ID}
	sort.Strings(atEnd)
	if got := claimConcurrently(t, 2, 100, claim(now.Add(lease))); !slices.Equal(got, atEnd) {
		t.Fatalf("as the lease ends, claimed %v, want %v", got, atEnd)
	}
	later := now.Add(lease + time.Microsecond)
	if got := claimConcurrently(t, 3, 4, claim(later)); !slices.Equal(got, due) {
		t.Fatalf("after the lease ended, claimed %v, want %v", got, due)
	}
	// Once every lease has ended, all twelve are due again, round after
	// round: each round is another chance for a race to hand one out twice.
	all := withSorted(due, atEnd...)
	last := claimRounds(t, later, lease, all, claim)

	// A claimed challenge is returned whole, and its lease is stored.
	cs, err := s.ClaimChallenges(ctx, last.Add(lease+time.Second), lease, 1)
	must(t, err, "ClaimChallenges")
	if len(cs) != 1 {
		t.Fatalf("claimed %d with limit 1", len(cs))
	}
	stored, err := s.GetChallenge(ctx, cs[0].ID)
	must(t, err, "GetChallenge")
	same(t, "claimed challenge", cs[0], stored)

	none, err := s.ClaimChallenges(ctx, later, lease, 0)
	must(t, err, "ClaimChallenges with limit 0")
	if len(none) != 0 {
		t.Fatalf("limit 0 claimed %d", len(none))
	}
}

func testClaimOrders(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	now := at(time.Hour)
	const lease = time.Minute

	var due []string
	mk := func(id, status string, leased time.Time) {
		o := newOrder(id, acct.ID, status)
		o.LeaseUntil = leased
		o.CSR = []byte("csr-" + id)
		must(t, s.CreateOrder(ctx, o, nil), "CreateOrder "+id)
	}
	for i := range 10 {
		leased := time.Time{} // never leased
		if i%2 == 1 {
			leased = now.Add(-time.Second) // its node died
		}
		mk(name("stuck", i), "processing", leased)
		due = append(due, name("stuck", i))
	}
	mk("running", "processing", now.Add(time.Second))
	mk("until-now", "processing", now)
	mk("ready", "ready", time.Time{})
	mk("valid", "valid", time.Time{})
	mk("pending", "pending", time.Time{})

	claim := func(now time.Time) func(limit int) ([]string, error) {
		return func(limit int) ([]string, error) {
			claimed, err := s.ClaimOrders(ctx, now, lease, limit)
			var ids []string
			for _, o := range claimed {
				if !o.LeaseUntil.Equal(now.Add(lease)) {
					t.Errorf("claimed %s with lease until %s, want %s", o.ID, o.LeaseUntil, now.Add(lease))
				}
				ids = append(ids, o.ID)
			}
			return ids, err
		}
	}
	if got := claimConcurrently(t, 4, 3, claim(now)); !slices.Equal(got, due) {
		t.Fatalf("four claimers of 3 claimed %v, want the stuck %v", got, due)
	}
	if again := claimConcurrently(t, 2, 100, claim(now)); len(again) != 0 {
		t.Fatalf("claimed %v again within the lease", again)
	}
	later := now.Add(lease + time.Microsecond)
	want := withSorted(due, "running", "until-now")
	if got := claimConcurrently(t, 3, 4, claim(later)); !slices.Equal(got, want) {
		t.Fatalf("after the leases ended, claimed %v, want %v", got, want)
	}
	last := claimRounds(t, later, lease, want, claim)

	claimed, err := s.ClaimOrders(ctx, last.Add(lease+time.Second), lease, 1)
	must(t, err, "ClaimOrders")
	if len(claimed) != 1 {
		t.Fatalf("claimed %d with limit 1", len(claimed))
	}
	stored, err := s.GetOrder(ctx, claimed[0].ID)
	must(t, err, "GetOrder")
	same(t, "claimed order", claimed[0], stored)
}

// claimRounds claims concurrently in five rounds, each just after the leases
// of the one before ended, checking that every round shares out exactly want
// (sorted) with nothing handed out twice. It returns the last round's now.
func claimRounds(t *testing.T, now time.Time, lease time.Duration, want []string, claim func(time.Time) func(int) ([]string, error)) time.Time {
	t.Helper()
	for round := range 5 {
		now = now.Add(lease + time.Microsecond)
		// Four claimers of three each for twelve rows: every claimer must
		// take a full share, so they all run through the contested rows.
		if got := claimConcurrently(t, 4, (len(want)+3)/4, claim(now)); !slices.Equal(got, want) {
			t.Fatalf("round %d: claimed %v, want %v", round, got, want)
		}
	}
	return now
}

// withSorted returns a sorted copy of ids with more appended.
func withSorted(ids []string, more ...string) []string {
	all := append(slices.Clone(ids), more...)
	sort.Strings(all)
	return all
}
