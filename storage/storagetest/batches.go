package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// testFindValidAuthorizations asks, in one call, what FindValidAuthorization
// answers one identifier at a time: the same authorization (with its
// challenges) per lookup, nil where it finds none, in the lookups' order.
func testFindValidAuthorizations(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	ident := dns("example.com")
	wild := newAuthz("wild", a.ID, ident, "valid", at(60*day))
	wild.Wildcard = true
	storeAuthzs(t, s, "order-1",
		newAuthz("early", a.ID, ident, "valid", at(10*day)),
		newAuthz("latest", a.ID, ident, "valid", at(20*day)),
		newAuthz("pending", a.ID, ident, "pending", at(30*day)),
		newAuthz("invalid", a.ID, ident, "invalid", at(31*day)),
		newAuthz("other-account", b.ID, ident, "valid", at(40*day)),
		newAuthz("www", a.ID, dns("www.example.com"), "valid", at(50*day)),
		newAuthz("other-type", a.ID, storage.Identifier{Type: "ip", Value: ident.Value}, "valid", at(55*day)),
		wild,
	)
	lookups := []storage.AuthzLookup{
		{Identifier: dns("nowhere.example")},
		{Identifier: ident},
		{Identifier: ident, Wildcard: true},
		{Identifier: dns("www.example.com")},
		{Identifier: dns("www.example.com"), Wildcard: true},
		{Identifier: storage.Identifier{Type: "ip", Value: ident.Value}},
		{Identifier: ident}, // asked twice, answered twice
	}
	for _, c := range []struct {
		what       string
		acct       string
		validUntil time.Time
		want       []string // "" for none
	}{
		{"every kind of lookup", a.ID, at(7 * day), []string{"", "latest", "wild", "www", "", "other-type", "latest"}},
		{"only the long-lived remain", a.ID, at(52 * day), []string{"", "", "wild", "", "", "other-type", ""}},
		{"other account", b.ID, at(0), []string{"", "other-account", "", "", "", "", "other-account"}},
		{"unknown account", "no-such-account", at(0), make([]string, len(lookups))},
	} {
		got, err := s.FindValidAuthorizations(ctx, c.acct, lookups, c.validUntil)
		must(t, err, c.what)
		if len(got) != len(lookups) {
			t.Fatalf("%s: %d answers for %d lookups", c.what, len(got), len(lookups))
		}
		for i, l := range lookups {
			one, err := s.FindValidAuthorization(ctx, c.acct, l.Identifier, l.Wildcard, c.validUntil)
			if c.want[i] == "" {
				wantErr(t, err, storage.ErrNotFound, c.what+": FindValidAuthorization")
				if got[i] != nil {
					t.Fatalf("%s: lookup %d (%v): got %q, want none", c.what, i, l, got[i].ID)
				}
				continue
			}
			must(t, err, c.what)
			if got[i] == nil || got[i].ID != c.want[i] {
				t.Fatalf("%s: lookup %d (%v): got %v, want %q", c.what, i, l, got[i], c.want[i])
			}
			same(t, c.what, got[i], one)
		}
	}
	got, err := s.FindValidAuthorizations(ctx, a.ID, nil, at(0))
	must(t, err, "no lookups")
	if len(got) != 0 {
		t.Fatalf("no lookups: %d answers", len(got))
	}
}

// testCountFailedAuthorizationsEach counts, in one call, what
// CountFailedAuthorizations counts one identifier at a time.
func testCountFailedAuthorizationsEach(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	ident := dns("example.com")
	ip := storage.Identifier{Type: "ip", Value: ident.Value}
	failed := func(id, acct string, ident storage.Identifier, updated time.Time) *storage.Authorization {
		z := newAuthz(id, acct, ident, "invalid", at(7*day))
		z.UpdatedAt = updated
		return z
	}
	storeAuthzs(t, s, "order-1",
		failed("a-recent", a.ID, ident, at(time.Hour)),
		failed("b-recent", b.ID, ident, at(2*time.Hour)),
		failed("a-old", a.ID, ident, at(-time.Hour)),
		failed("www", a.ID, dns("www.example.com"), at(time.Hour)),
		failed("ip", a.ID, ip, at(time.Hour)),
		newAuthz("pending", a.ID, ident, "pending", at(7*day)),
		newAuthz("valid", a.ID, dns("www.example.com"), "valid", at(7*day)),
	)
	idents := []storage.Identifier{dns("nowhere.example"), ident, dns("www.example.com"), ip, ident}
	for _, since := range []time.Time{at(0), at(time.Hour), at(-2 * time.Hour), at(day)} {
		got, err := s.CountFailedAuthorizationsEach(ctx, idents, since)
		must(t, err, "CountFailedAuthorizationsEach")
		if len(got) != len(idents) {
			t.Fatalf("%d counts for %d identifiers", len(got), len(idents))
		}
		for i, id := range idents {
			one, err := s.CountFailedAuthorizations(ctx, id, since)
			must(t, err, "CountFailedAuthorizations")
			if got[i] != one {
				t.Fatalf("since %s, %v: CountFailedAuthorizationsEach says %d, CountFailedAuthorizations %d", since, id, got[i], one)
			}
		}
		if since.Equal(at(0)) && (got[1] != 2 || got[2] != 1 || got[3] != 1 || got[0] != 0) {
			t.Fatalf("since %s: counts %v, want [0 2 1 1 2]", since, got)
		}
	}
	got, err := s.CountFailedAuthorizationsEach(ctx, nil, at(0))
	must(t, err, "no identifiers")
	if len(got) != 0 {
		t.Fatalf("no identifiers: %d counts", len(got))
	}
}
