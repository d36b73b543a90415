package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testEABKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	k1 := &storage.EABKey{
		ID: "kid-1", Key: []byte{0x00, 0x01, 0xfe, 0xff}, Algorithm: "HS256", Comment: "team é",
		AllowedSuffixes: []string{"example.com", "example.net"}, CreatedAt: base,
	}
	k2 := &storage.EABKey{ID: "kid-2", Key: []byte("secret"), Algorithm: "HS512", CreatedAt: at(time.Minute)}
	k0 := &storage.EABKey{ID: "kid-0", Key: []byte("older"), Algorithm: "HS384", CreatedAt: at(-time.Minute)}
	for _, k := range []*storage.EABKey{k1, k2, k0} {
		must(t, s.CreateEABKey(ctx, k), "CreateEABKey "+k.ID)
	}
	dup := *k2
	wantErr(t, s.CreateEABKey(ctx, &dup), storage.ErrConflict, "CreateEABKey with an ID in use")

	got, err := s.GetEABKey(ctx, k1.ID)
	must(t, err, "GetEABKey")
	same(t, "GetEABKey", got, k1)
	_, err = s.GetEABKey(ctx, "no-such-kid")
	wantErr(t, err, storage.ErrNotFound, "GetEABKey of an unknown ID")
	list, err := s.ListEABKeys(ctx)
	must(t, err, "ListEABKeys")
	same(t, "ListEABKeys, oldest first", list, []*storage.EABKey{k0, k1, k2})

	must(t, s.BindEABKey(ctx, k1.ID, "acct-1"), "BindEABKey")
	wantErr(t, s.BindEABKey(ctx, k1.ID, "acct-2"), storage.ErrConflict, "binding a bound key to another account")
	wantErr(t, s.BindEABKey(ctx, k1.ID, "acct-1"), storage.ErrConflict, "binding a bound key again")
	got, err = s.GetEABKey(ctx, k1.ID)
	must(t, err, "GetEABKey")
	k1.AccountID = "acct-1"
	same(t, "bound key", got, k1)

	must(t, s.RevokeEABKey(ctx, k2.ID), "RevokeEABKey")
	wantErr(t, s.BindEABKey(ctx, k2.ID, "acct-2"), storage.ErrConflict, "binding a revoked key")
	must(t, s.RevokeEABKey(ctx, k1.ID), "RevokeEABKey of a bound key")
	got, err = s.GetEABKey(ctx, k2.ID)
	must(t, err, "GetEABKey")
	k2.Revoked = true
	same(t, "revoked key", got, k2)
	got, err = s.GetEABKey(ctx, k1.ID)
	must(t, err, "GetEABKey")
	k1.Revoked = true
	same(t, "revoked bound key keeps its account", got, k1)

	wantErr(t, s.RevokeEABKey(ctx, "no-such-kid"), storage.ErrNotFound, "RevokeEABKey of an unknown ID")
	wantErr(t, s.BindEABKey(ctx, "no-such-kid", "acct-1"), storage.ErrNotFound, "BindEABKey of an unknown ID")
}

// testEABBindRace: one EAB key, many accounts binding it at once; one wins.
func testEABBindRace(t *testing.T, s storage.Store) {
	ctx := t.Context()
	k := &storage.EABKey{ID: "kid-1", Key: []byte("secret"), Algorithm: "HS256", CreatedAt: base}
	must(t, s.CreateEABKey(ctx, k), "CreateEABKey")
	errs := race(20, func(i int) error { return s.BindEABKey(ctx, k.ID, name("acct", i)) })
	if ok, lost := tally(t, errs, storage.ErrConflict); ok != 1 || lost != 19 {
		t.Fatalf("20 bindings of one key: %d succeeded, %d conflicted; want 1 and 19", ok, lost)
	}
	got, err := s.GetEABKey(ctx, k.ID)
	must(t, err, "GetEABKey")
	for i, err := range errs {
		if err == nil && got.AccountID != name("acct", i) {
			t.Fatalf("key bound to %q, but %s won", got.AccountID, name("acct", i))
		}
	}
}
