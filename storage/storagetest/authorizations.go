package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testGetAuthorizations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	a1 := newAuthz("authz-1", acct.ID, dns("example.com"), "pending", at(7*day))
	a2 := newAuthz("authz-2", acct.ID, storage.Identifier{Type: "ip", Value: "2001:db8::1"}, "pending", at(7*day))
	a2.Challenges = nil // an authorization without challenges is still one
	a3 := newAuthz("authz-3", acct.ID, dns("www.example.com"), "valid", at(30*day))
	storeAuthzs(t, s, "order-1", a1, a2, a3)

	got, err := s.GetAuthorization(ctx, a1.ID)
	must(t, err, "GetAuthorization")
	same(t, "GetAuthorization", got, a1)
	got, err = s.GetAuthorization(ctx, a2.ID)
	must(t, err, "GetAuthorization without challenges")
	same(t, "GetAuthorization without challenges", got, a2)
	_, err = s.GetAuthorization(ctx, "no-such-authz")
	wantErr(t, err, storage.ErrNotFound, "GetAuthorization of an unknown ID")

	list, err := s.GetAuthorizations(ctx, []string{a3.ID, a1.ID, a2.ID})
	must(t, err, "GetAuthorizations")
	same(t, "GetAuthorizations", list, []*storage.Authorization{a3, a1, a2})

	list, err = s.GetAuthorizations(ctx, nil)
	must(t, err, "GetAuthorizations of none")
	if len(list) != 0 {
		t.Fatalf("GetAuthorizations(nil) = %d authorizations", len(list))
	}
	_, err = s.GetAuthorizations(ctx, []string{a1.ID, "no-such-authz"})
	wantErr(t, err, storage.ErrNotFound, "GetAuthorizations with an unknown ID")
}

func testUpdateAuthorization(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	a := newAuthz("authz-1", acct.ID, dns("example.com"), "pending", at(7*day))
	storeAuthzs(t, s, "order-1", a)

	upd := *a
	upd.Status = "valid"
	upd.Expires = at(30 * day)
	upd.UpdatedAt = at(time.Minute)
	// Fields UpdateAuthorization does not write.
	upd.Identifier = dns("forged.example")
	upd.Wildcard = true
	upd.AccountID = "forged"
	upd.Challenges = nil
	must(t, s.UpdateAuthorization(ctx, &upd, "pending"), "UpdateAuthorization pending -> valid")

	want := *a
	want.Status, want.Expires, want.UpdatedAt = upd.Status, upd.Expires, upd.UpdatedAt
	got, err := s.GetAuthorization(ctx, a.ID)
	must(t, err, "GetAuthorization")
	same(t, "updated authorization", got, &want)

	wantErr(t, s.UpdateAuthorization(ctx, &upd, "pending"), storage.ErrConflict, "UpdateAuthorization from a stale status")
	upd.ID = "no-such-authz"
	wantErr(t, s.UpdateAuthorization(ctx, &upd, "pending"), storage.ErrNotFound, "UpdateAuthorization of an unknown ID")
}

func testFindValidAuthorization(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	ident := dns("example.com")
	wild := newAuthz("wild", a.ID, ident, "valid", at(60*day))
	wild.Wildcard = true
	candidates := []*storage.Authorization{
		newAuthz("early", a.ID, ident, "valid", at(10*day)),
		newAuthz("latest", a.ID, ident, "valid", at(20*day)),
		newAuthz("soonest", a.ID, ident, "valid", at(5*day)),
		newAuthz("pending", a.ID, ident, "pending", at(30*day)),
		newAuthz("invalid", a.ID, ident, "invalid", at(31*day)),
		newAuthz("deactivated", a.ID, ident, "deactivated", at(32*day)),
		newAuthz("other-account", b.ID, ident, "valid", at(40*day)),
		newAuthz("other-name", a.ID, dns("www.example.com"), "valid", at(50*day)),
		newAuthz("other-type", a.ID, storage.Identifier{Type: "ip", Value: ident.Value}, "valid", at(55*day)),
		wild,
	}
	storeAuthzs(t, s, "order-1", candidates...)
	byID := map[string]*storage.Authorization{}
	for _, c := range candidates {
		byID[c.ID] = c
	}

	for _, c := range []struct {
		what       string
		acct       string
		ident      storage.Identifier
		wildcard   bool
		validUntil time.Time
		want       string // "" for ErrNotFound
	}{
		{"latest-expiring valid one", a.ID, ident, false, at(7 * day), "latest"},
		{"expiring exactly at validUntil is not after it", a.ID, ident, false, at(20 * day), ""},
		{"none lasts long enough", a.ID, ident, false, at(25 * day), ""},
		{"wildcard", a.ID, ident, true, at(0), "wild"},
		{"other account", b.ID, ident, false, at(0), "other-account"},
		{"ip identifier of the same value", a.ID, storage.Identifier{Type: "ip", Value: ident.Value}, false, at(0), "other-type"},
		{"unknown name", a.ID, dns("nowhere.example"), false, at(0), ""},
		{"unknown account", "no-such-account", ident, false, at(0), ""},
	} {
		got, err := s.FindValidAuthorization(ctx, c.acct, c.ident, c.wildcard, c.validUntil)
		if c.want == "" {
			wantErr(t, err, storage.ErrNotFound, c.what)
			continue
		}
		must(t, err, c.what)
		same(t, c.what, got, byID[c.want])
	}
}

func testCountFailedAuthorizations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	ident := dns("example.com")
	failed := func(id, acct string, ident storage.Identifier, updated time.Time) *storage.Authorization {
		z := newAuthz(id, acct, ident, "invalid", at(7*day))
		z.UpdatedAt = updated
		return z
	}
	storeAuthzs(t, s, "order-1",
		failed("a-recent", a.ID, ident, at(time.Hour)),
		failed("b-recent", b.ID, ident, at(2*time.Hour)),
		failed("a-old", a.ID, ident, at(-time.Hour)),
		failed("other-name", a.ID, dns("www.example.com"), at(time.Hour)),
		newAuthz("pending", a.ID, ident, "pending", at(7*day)),
		newAuthz("valid", a.ID, ident, "valid", at(7*day)),
	)
	count := func(since time.Time, want int) {
		t.Helper()
		n, err := s.CountFailedAuthorizations(ctx, ident, since)
		must(t, err, "CountFailedAuthorizations")
		if n != want {
			t.Fatalf("CountFailedAuthorizations(%v, %s) = %d, want %d", ident, since, n, want)
		}
	}
	count(at(0), 2)
	count(at(time.Hour), 2) // since is inclusive
	count(at(-2*time.Hour), 3)

	// An authorization failing now counts from the time of its failure.
	p, err := s.GetAuthorization(ctx, "pending")
	must(t, err, "GetAuthorization")
	p.Status, p.UpdatedAt = "invalid", at(3*time.Hour)
	must(t, s.UpdateAuthorization(ctx, p, "pending"), "UpdateAuthorization pending -> invalid")
	count(at(3*time.Hour), 1)
	count(at(0), 3)
}

// testCreateAuthorization stores a pre-authorization outside any order: it
// reads back with its challenges, appears in no order list or count, and a
// duplicate ID is refused.
func testCreateAuthorization(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "k-preauth")
	az := newAuthz("az-pre", a.ID, dns("pre.example.com"), "pending", at(day))
	az.Challenges = []*storage.Challenge{newChallenge("ch-pre-1", az.ID, "http-01"), newChallenge("ch-pre-2", az.ID, "tls-alpn-01")}
	must(t, s.CreateAuthorization(ctx, az), "create authorization")
	got, err := s.GetAuthorization(ctx, "az-pre")
	must(t, err, "get pre-authorization")
	if len(got.Challenges) != 2 || got.Challenges[0].ID != "ch-pre-1" || got.Challenges[1].Type != "tls-alpn-01" {
		t.Fatalf("pre-authorization: %s", dump(got))
	}
	ids, _, err := s.ListOrderIDs(ctx, a.ID, "", 10)
	must(t, err, "list orders")
	same(t, "orders after a pre-authorization", len(ids), 0)
	n, err := s.CountOrders(ctx, a.ID, at(-day))
	must(t, err, "count orders")
	same(t, "order count after a pre-authorization", n, 0)
	dup := newAuthz("az-pre", a.ID, dns("pre2.example.com"), "pending", at(day))
	wantErr(t, s.CreateAuthorization(ctx, dup), storage.ErrConflict, "duplicate authorization ID")
	// An order may then use it, as newOrder does when reusing.
	o := newOrder("o-pre", a.ID, "pending", got)
	must(t, s.CreateOrder(ctx, o, nil), "order using the pre-authorization")
}
