package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testCreateOrder(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	a1 := newAuthz("authz-1", acct.ID, dns("example.com"), "pending", at(7*day))
	a2 := newAuthz("authz-2", acct.ID, dns("example.com"), "pending", at(7*day))
	a2.Wildcard = true
	a2.Challenges = a2.Challenges[1:] // a wildcard is validated by dns-01 alone
	o1 := newOrder("order-1", acct.ID, "pending", a1, a2)
	o1.Replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
	must(t, s.CreateOrder(ctx, o1, []*storage.Authorization{a1, a2}), "CreateOrder")

	got, err := s.GetOrder(ctx, o1.ID)
	must(t, err, "GetOrder")
	same(t, "GetOrder", got, o1)
	authzs, err := s.GetAuthorizations(ctx, []string{a2.ID, a1.ID})
	must(t, err, "GetAuthorizations")
	same(t, "GetAuthorizations in the order asked", authzs, []*storage.Authorization{a2, a1})

	// A second order reuses a1 and brings a new authorization.
	a3 := newAuthz("authz-3", acct.ID, dns("www.example.com"), "pending", at(7*day))
	o2 := newOrder("order-2", acct.ID, "pending", a1, a3)
	must(t, s.CreateOrder(ctx, o2, []*storage.Authorization{a3}), "CreateOrder reusing an authorization")
	got, err = s.GetOrder(ctx, o2.ID)
	must(t, err, "GetOrder reusing")
	same(t, "order reusing an authorization", got, o2)
	authzs, err = s.GetAuthorizations(ctx, got.AuthzIDs)
	must(t, err, "GetAuthorizations of the reusing order")
	same(t, "authorizations of the reusing order", authzs, []*storage.Authorization{a1, a3})

	_, err = s.GetOrder(ctx, "no-such-order")
	wantErr(t, err, storage.ErrNotFound, "GetOrder of an unknown ID")
}

// testCreateOrderIsAtomic: an order whose creation fails leaves nothing behind,
// neither the order nor any of its new authorizations or challenges.
func testCreateOrderIsAtomic(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	a1 := newAuthz("authz-1", acct.ID, dns("example.com"), "pending", at(7*day))
	o1 := storeAuthzs(t, s, "order-1", a1)

	gone := func(what string, orderID string, authzs ...*storage.Authorization) {
		t.Helper()
		_, err := s.GetOrder(ctx, orderID)
		wantErr(t, err, storage.ErrNotFound, what+": the order")
		for _, a := range authzs {
			_, err = s.GetAuthorization(ctx, a.ID)
			wantErr(t, err, storage.ErrNotFound, what+": authorization "+a.ID)
			for _, c := range a.Challenges {
				_, err = s.GetChallenge(ctx, c.ID)
				wantErr(t, err, storage.ErrNotFound, what+": challenge "+c.ID)
			}
		}
	}

	// The order ID is taken.
	fresh := newAuthz("authz-2", acct.ID, dns("a.example.com"), "pending", at(7*day))
	dup := newOrder(o1.ID, acct.ID, "pending", fresh)
	wantErr(t, s.CreateOrder(ctx, dup, []*storage.Authorization{fresh}), storage.ErrConflict, "CreateOrder with an ID in use")
	_, err := s.GetAuthorization(ctx, fresh.ID)
	wantErr(t, err, storage.ErrNotFound, "new authorization of the refused order")
	got, err := s.GetOrder(ctx, o1.ID)
	must(t, err, "GetOrder")
	same(t, "the order whose ID was reused", got, o1)

	// The second new authorization's ID is taken: the first must not remain.
	first := newAuthz("authz-3", acct.ID, dns("b.example.com"), "pending", at(7*day))
	clash := newAuthz(a1.ID, acct.ID, dns("c.example.com"), "pending", at(7*day))
	clash.Challenges = []*storage.Challenge{newChallenge("clash-chall", a1.ID, "http-01")}
	o2 := newOrder("order-2", acct.ID, "pending", first, clash)
	wantErr(t, s.CreateOrder(ctx, o2, []*storage.Authorization{first, clash}), storage.ErrConflict,
		"CreateOrder with an authorization ID in use")
	gone("authorization ID in use", o2.ID, first)

	// The order names an authorization that does not exist.
	third := newAuthz("authz-4", acct.ID, dns("d.example.com"), "pending", at(7*day))
	o3 := newOrder("order-3", acct.ID, "pending", third)
	o3.AuthzIDs = append(o3.AuthzIDs, "no-such-authz")
	wantErr(t, s.CreateOrder(ctx, o3, []*storage.Authorization{third}), storage.ErrNotFound,
		"CreateOrder naming an unknown authorization")
	gone("unknown authorization", o3.ID, third)

	// The order's account does not exist.
	fourth := newAuthz("authz-5", "no-such-account", dns("e.example.com"), "pending", at(7*day))
	o4 := newOrder("order-4", "no-such-account", "pending", fourth)
	wantErr(t, s.CreateOrder(ctx, o4, []*storage.Authorization{fourth}), storage.ErrNotFound,
		"CreateOrder for an unknown account")
	gone("unknown account", o4.ID, fourth)
}

func testUpdateOrder(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	o := storeAuthzs(t, s, "order-1", newAuthz("authz-1", acct.ID, dns("example.com"), "valid", at(30*day)))
	o.Status = "ready"
	o.UpdatedAt = at(time.Minute)
	must(t, s.UpdateOrder(ctx, o, "pending"), "UpdateOrder pending -> ready")

	upd := clone(o)
	upd.Status = "processing"
	upd.CSR = []byte{0x30, 0x82, 0x01, 0x00, 0xff}
	upd.LeaseUntil = at(3 * time.Minute)
	upd.UpdatedAt = at(2 * time.Minute)
	// Fields UpdateOrder does not write: the stored ones must survive.
	upd.Profile = "forged"
	upd.Identifiers = []storage.Identifier{dns("forged.example")}
	upd.AuthzIDs = []string{"forged"}
	upd.Expires = at(99 * day)
	upd.Replaces = "forged"
	must(t, s.UpdateOrder(ctx, upd, "ready"), "UpdateOrder ready -> processing")

	want := clone(o)
	want.Status, want.CSR, want.LeaseUntil, want.UpdatedAt = upd.Status, upd.CSR, upd.LeaseUntil, upd.UpdatedAt
	got, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	same(t, "order after UpdateOrder", got, want)

	wantErr(t, s.UpdateOrder(ctx, upd, "ready"), storage.ErrConflict, "UpdateOrder from a stale status")
	missing := clone(upd)
	missing.ID = "no-such-order"
	wantErr(t, s.UpdateOrder(ctx, missing, "ready"), storage.ErrNotFound, "UpdateOrder of an unknown ID")

	// Issuance failed: an error appears, the lease goes.
	failed := clone(want)
	failed.Status = "invalid"
	failed.Error = []byte(`{"type":"urn:ietf:params:acme:error:badCSR","detail":"\"quoted\" ünïcode"}`)
	failed.LeaseUntil = time.Time{}
	failed.UpdatedAt = at(4 * time.Minute)
	must(t, s.UpdateOrder(ctx, failed, "processing"), "UpdateOrder processing -> invalid")
	got, err = s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	same(t, "failed order", got, failed)

	// And a certificate serial, with the error cleared again.
	done := clone(failed)
	done.Status, done.CertSerial, done.Error = "valid", "7f3a9c", nil
	must(t, s.UpdateOrder(ctx, done, "invalid"), "UpdateOrder invalid -> valid")
	got, err = s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	same(t, "issued order", got, done)
}

// testFinalizeRace: twenty concurrent finalizes of one ready order; exactly one
// moves it to processing.
func testFinalizeRace(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	o := storeAuthzs(t, s, "order-1", newAuthz("authz-1", acct.ID, dns("example.com"), "valid", at(30*day)))
	o.Status = "ready"
	must(t, s.UpdateOrder(ctx, o, "pending"), "UpdateOrder pending -> ready")

	errs := race(20, func(i int) error {
		p := clone(o)
		p.Status = "processing"
		p.CSR = []byte(name("csr", i))
		p.LeaseUntil = at(time.Minute)
		return s.UpdateOrder(ctx, p, "ready")
	})
	ok, lost := tally(t, errs, storage.ErrConflict)
	if ok != 1 || lost != 19 {
		t.Fatalf("20 finalizes: %d succeeded, %d conflicted; want 1 and 19", ok, lost)
	}
	got, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	for i, err := range errs {
		if err == nil && string(got.CSR) != name("csr", i) {
			t.Fatalf("stored CSR %q is not the winner's %q", got.CSR, name("csr", i))
		}
	}
	if got.Status != "processing" {
		t.Fatalf("status %q, want processing", got.Status)
	}
}

func testCountOrders(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	for i, c := range []struct {
		acct    *storage.Account
		created time.Time
	}{
		{a, at(0)}, {a, at(time.Hour)}, {a, at(2 * time.Hour)}, {b, at(2 * time.Hour)},
	} {
		o := newOrder(name("order", i), c.acct.ID, "pending")
		o.CreatedAt, o.UpdatedAt = c.created, c.created
		must(t, s.CreateOrder(ctx, o, nil), "CreateOrder")
	}
	for _, c := range []struct {
		acct  string
		since time.Time
		want  int
	}{
		{a.ID, at(-time.Hour), 3},
		{a.ID, at(time.Hour), 2}, // since is inclusive
		{a.ID, at(3 * time.Hour), 0},
		{b.ID, at(0), 1},
		{"no-such-account", at(0), 0},
	} {
		n, err := s.CountOrders(ctx, c.acct, c.since)
		must(t, err, "CountOrders")
		if n != c.want {
			t.Errorf("CountOrders(%s, %s) = %d, want %d", c.acct, c.since, n, c.want)
		}
	}
}

func testOrdersReplacing(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "k-replacing")
	none, err := s.OrdersReplacing(ctx, "aki.serial")
	must(t, err, "orders replacing, none yet")
	same(t, "orders replacing nothing", len(none), 0)
	for i, replaces := range []string{"aki.serial", "", "aki.other", "aki.serial"} {
		az := newAuthz(name("az-repl", i), a.ID, dns(name("repl", i)+".example.com"), "pending", at(time.Hour))
		o := newOrder(name("o-repl", i), a.ID, "pending", az)
		o.Replaces = replaces
		o.CreatedAt = at(time.Duration(i) * time.Minute)
		must(t, s.CreateOrder(ctx, o, []*storage.Authorization{az}), "create order")
	}
	got, err := s.OrdersReplacing(ctx, "aki.serial")
	must(t, err, "orders replacing")
	if len(got) != 2 || got[0].ID != name("o-repl", 0) || got[1].ID != name("o-repl", 3) {
		t.Fatalf("orders replacing aki.serial: %s", dump(got))
	}
	empty, err := s.OrdersReplacing(ctx, "")
	must(t, err, "orders replacing the empty ID")
	same(t, "orders replacing the empty ID", len(empty), 0)
}
