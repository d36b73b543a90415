package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testAccounts(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")

	got, err := s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount")
	same(t, "GetAccount", got, a)
	got, err = s.GetAccountByKeyID(ctx, a.KeyID)
	must(t, err, "GetAccountByKeyID")
	same(t, "GetAccountByKeyID", got, a)

	_, err = s.GetAccount(ctx, "no-such-account")
	wantErr(t, err, storage.ErrNotFound, "GetAccount of an unknown ID")
	_, err = s.GetAccountByKeyID(ctx, "no-such-key")
	wantErr(t, err, storage.ErrNotFound, "GetAccountByKeyID of an unknown key")

	sameKey := newAccount("key-a")
	sameKey.ID = "another-id"
	wantErr(t, s.CreateAccount(ctx, sameKey), storage.ErrConflict, "CreateAccount with a key ID in use")
	sameID := newAccount("key-b")
	sameID.ID = a.ID
	wantErr(t, s.CreateAccount(ctx, sameID), storage.ErrConflict, "CreateAccount with an ID in use")

	_, err = s.GetAccount(ctx, "another-id")
	wantErr(t, err, storage.ErrNotFound, "the refused account")
	got, err = s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount after refusals")
	same(t, "account after refused duplicates", got, a)
}

func testUpdateAccount(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")

	upd := *a
	upd.Contact = []string{"mailto:new@example.com"}
	upd.Status = "deactivated"
	upd.TermsAgreed = false
	// Fields UpdateAccount does not write: the stored ones must survive.
	upd.KeyID = "forged-key"
	upd.CreatedIP = "203.0.113.9"
	upd.EABKeyID = "forged-eab"
	must(t, s.UpdateAccount(ctx, &upd, "valid"), "UpdateAccount valid -> deactivated")

	want := *a
	want.Contact, want.Status, want.TermsAgreed = upd.Contact, upd.Status, upd.TermsAgreed
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount")
	same(t, "updated account", got, &want)

	wantErr(t, s.UpdateAccount(ctx, &upd, "valid"), storage.ErrConflict, "UpdateAccount from a stale status")
	missing := upd
	missing.ID = "no-such-account"
	wantErr(t, s.UpdateAccount(ctx, &missing, "valid"), storage.ErrNotFound, "UpdateAccount of an unknown ID")
}

func testRolloverAccountKey(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")

	newKey := []byte(`{"kty":"OKP","crv":"Ed25519","x":"new"}`)
	must(t, s.RolloverAccountKey(ctx, a.ID, "key-a", "key-c", newKey), "rollover a: key-a -> key-c")
	got, err := s.GetAccountByKeyID(ctx, "key-c")
	must(t, err, "GetAccountByKeyID of the new key")
	want := *a
	want.KeyID, want.Key = "key-c", newKey
	same(t, "account after rollover", got, &want)
	_, err = s.GetAccountByKeyID(ctx, "key-a")
	wantErr(t, err, storage.ErrNotFound, "the old key after rollover")

	wantErr(t, s.RolloverAccountKey(ctx, a.ID, "key-a", "key-d", newKey), storage.ErrConflict,
		"rollover from a key that is no longer current")
	wantErr(t, s.RolloverAccountKey(ctx, a.ID, "key-c", "key-b", newKey), storage.ErrConflict,
		"rollover to another account's key")
	wantErr(t, s.RolloverAccountKey(ctx, "no-such-account", "key-x", "key-y", newKey), storage.ErrNotFound,
		"rollover of an unknown account")

	got, err = s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount a")
	same(t, "account a after refused rollovers", got, &want)
	got, err = s.GetAccount(ctx, b.ID)
	must(t, err, "GetAccount b")
	same(t, "account b after refused rollovers", got, b)
}

// testAccountKeyRace: one new key binds one account, whether two clients
// register it at once or two accounts roll over to it at once.
func testAccountKeyRace(t *testing.T, s storage.Store) {
	ctx := t.Context()
	errs := race(20, func(i int) error {
		a := newAccount("contested")
		a.ID = name("acct", i)
		return s.CreateAccount(ctx, a)
	})
	if ok, lost := tally(t, errs, storage.ErrConflict); ok != 1 || lost != 19 {
		t.Fatalf("20 accounts for one key: %d created, %d conflicted; want 1 and 19", ok, lost)
	}
	got, err := s.GetAccountByKeyID(ctx, "contested")
	must(t, err, "GetAccountByKeyID")
	for i, err := range errs {
		if err == nil && got.ID != name("acct", i) {
			t.Fatalf("key belongs to %s, but %s won the race", got.ID, name("acct", i))
		}
	}

	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	accounts := []*storage.Account{a, b}
	errs = race(2, func(i int) error {
		return s.RolloverAccountKey(ctx, accounts[i].ID, accounts[i].KeyID, "key-new", []byte(`{}`))
	})
	if ok, lost := tally(t, errs, storage.ErrConflict); ok != 1 || lost != 1 {
		t.Fatalf("two rollovers to one key: %d succeeded, %d conflicted; want 1 and 1", ok, lost)
	}
}

func testCountAccountsByIP(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i, c := range []struct {
		ip      string
		created time.Time
	}{
		{"192.0.2.1", at(0)},
		{"192.0.2.1", at(time.Hour)},
		{"192.0.2.1", at(2 * time.Hour)},
		{"2001:db8::1", at(2 * time.Hour)},
	} {
		a := newAccount(name("key", i))
		a.CreatedIP, a.CreatedAt = c.ip, c.created
		must(t, s.CreateAccount(ctx, a), "CreateAccount")
	}
	for _, c := range []struct {
		ip    string
		since time.Time
		want  int
	}{
		{"192.0.2.1", at(-time.Hour), 3},
		{"192.0.2.1", at(time.Hour), 2}, // since is inclusive
		{"192.0.2.1", at(3 * time.Hour), 0},
		{"2001:db8::1", at(0), 1},
		{"198.51.100.7", at(0), 0},
	} {
		n, err := s.CountAccountsByIP(ctx, c.ip, c.since)
		must(t, err, "CountAccountsByIP")
		if n != c.want {
			t.Errorf("CountAccountsByIP(%s, %s) = %d, want %d", c.ip, c.since, n, c.want)
		}
	}
}
