package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// The operator's searches (storage.Admin) join its checks to the suite here,
// so that they live apart from the checks of Store.
func init() {
	suite = append(suite,
		check{"AdminSearches", testAdminSearches},
		check{"AdminCounts", testAdminCounts},
		check{"CRLRequests", testCRLRequests},
	)
}

// admin returns s as a storage.Admin, failing t if the driver lacks it.
func admin(t *testing.T, s storage.Store) storage.Admin {
	t.Helper()
	a, ok := s.(storage.Admin)
	if !ok {
		t.Fatalf("%T does not implement storage.Admin", s)
	}
	return a
}

// adminFixture stores two accounts, three orders and four ledger entries:
//
//	order a1 (account A, valid):   example.com, www.example.com  -> s-a1 issued, s-a2 intent only
//	order a2 (account A, pending): other.example
//	order b1 (account B, valid):   example.com                   -> s-b1 issued, revoked, expires in 10 days
//	no order:                                                     s-x issued, expired a day ago
func adminFixture(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := t.Context()
	acctA, acctB := createAccount(t, s, "A"), createAccount(t, s, "B")
	mk := func(id string, acct *storage.Account, status string, created time.Duration, names ...string) {
		var authzs []*storage.Authorization
		for i, n := range names {
			authzs = append(authzs, newAuthz(name(id+"-authz", i), acct.ID, dns(n), "valid", at(30*day)))
		}
		o := newOrder(id, acct.ID, status, authzs...)
		o.CreatedAt = at(created)
		must(t, s.CreateOrder(ctx, o, authzs), "CreateOrder "+id)
	}
	mk("a1", acctA, "valid", time.Minute, "example.com", "www.example.com")
	mk("a2", acctA, "pending", 2*time.Minute, "other.example")
	mk("b1", acctB, "valid", 3*time.Minute, "example.com")
	reserve(t, s, "a1", "E1", "a1", at(time.Minute), at(90*day), true)
	reserve(t, s, "a2", "E1", "a1", at(2*time.Minute), at(90*day), false)
	reserve(t, s, "b1", "E1", "b1", at(3*time.Minute), at(10*day), true)
	reserve(t, s, "ff", "R1", "", at(-91*day), at(-day), true)
	must(t, s.RevokeCertificate(ctx, "b1", at(time.Hour), 1), "RevokeCertificate b1")
}

func serials(cs []*storage.Certificate) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}

func testAdminSearches(t *testing.T, s storage.Store) {
	adminFixture(t, s)
	a, ctx := admin(t, s), t.Context()
	for _, tc := range []struct {
		what string
		f    storage.CertificateFilter
		want []string
	}{
		{"all, newest first", storage.CertificateFilter{}, []string{"b1", "a2", "a1", "ff"}},
		{"limit", storage.CertificateFilter{Limit: 2}, []string{"b1", "a2"}},
		{"serial", storage.CertificateFilter{Serial: "ff"}, []string{"ff"}},
		{"issuer", storage.CertificateFilter{Issuer: "E1"}, []string{"b1", "a2", "a1"}},
		{"account", storage.CertificateFilter{AccountID: "acct-A"}, []string{"a2", "a1"}},
		{"account, issued only", storage.CertificateFilter{AccountID: "acct-A", IssuedOnly: true}, []string{"a1"}},
		{"name", storage.CertificateFilter{Name: "example.com"}, []string{"b1", "a2", "a1"}},
		{"second name of an order", storage.CertificateFilter{Name: "www.example.com"}, []string{"a2", "a1"}},
		{"a name is matched whole", storage.CertificateFilter{Name: "example"}, []string{}},
		{"name and account", storage.CertificateFilter{Name: "example.com", AccountID: "acct-B"}, []string{"b1"}},
		{"unexpired", storage.CertificateFilter{ExpiresAfter: base}, []string{"b1", "a2", "a1"}},
		{"expiring within 30 days", storage.CertificateFilter{ExpiresAfter: base, ExpiresBefore: at(30 * day)}, []string{"b1"}},
		{"expired", storage.CertificateFilter{ExpiresBefore: base}, []string{"ff"}},
	} {
		got, err := a.ListCertificates(ctx, tc.f)
		must(t, err, "ListCertificates "+tc.what)
		same(t, "ListCertificates "+tc.what, serials(got), tc.want)
	}
	got, err := a.ListCertificates(ctx, storage.CertificateFilter{Serial: "b1"})
	must(t, err, "ListCertificates b1")
	if len(got) != 1 || got[0].RevokedAt.IsZero() || got[0].Reason != 1 || string(got[0].DER) != "cert-b1" || got[0].OrderID != "b1" {
		t.Fatalf("ListCertificates b1: got %s, want the whole revoked entry", dump(got))
	}

	for _, tc := range []struct {
		what string
		f    storage.AccountFilter
		want []string
	}{
		{"all", storage.AccountFilter{}, []string{"acct-B", "acct-A"}},
		{"by ID", storage.AccountFilter{ID: "acct-A"}, []string{"acct-A"}},
		{"by own contact", storage.AccountFilter{Contact: "mailto:B@example.com"}, []string{"acct-B"}},
		{"by shared contact", storage.AccountFilter{Contact: "mailto:ops@example.com"}, []string{"acct-B", "acct-A"}},
		{"contact is matched whole", storage.AccountFilter{Contact: "ops@example.com"}, []string{}},
		{"by status", storage.AccountFilter{Status: "deactivated"}, []string{}},
		{"limit", storage.AccountFilter{Limit: 1}, []string{"acct-B"}},
	} {
		got, err := a.ListAccounts(ctx, tc.f)
		must(t, err, "ListAccounts "+tc.what)
		ids := []string{}
		for _, acct := range got {
			ids = append(ids, acct.ID)
		}
		same(t, "ListAccounts "+tc.what, ids, tc.want)
	}
	accts, err := a.ListAccounts(ctx, storage.AccountFilter{ID: "acct-A"})
	must(t, err, "ListAccounts acct-A")
	same(t, "ListAccounts acct-A", accts, []*storage.Account{newAccount("A")})

	for _, tc := range []struct {
		what string
		f    storage.OrderFilter
		want []string
	}{
		{"all", storage.OrderFilter{}, []string{"b1", "a2", "a1"}},
		{"account", storage.OrderFilter{AccountID: "acct-A"}, []string{"a2", "a1"}},
		{"account and status", storage.OrderFilter{AccountID: "acct-A", Status: "pending"}, []string{"a2"}},
		{"name", storage.OrderFilter{Name: "example.com"}, []string{"b1", "a1"}},
		{"limit", storage.OrderFilter{Limit: 1}, []string{"b1"}},
	} {
		got, err := a.ListOrders(ctx, tc.f)
		must(t, err, "ListOrders "+tc.what)
		ids := []string{}
		for _, o := range got {
			ids = append(ids, o.ID)
		}
		same(t, "ListOrders "+tc.what, ids, tc.want)
	}
	orders, err := a.ListOrders(ctx, storage.OrderFilter{Name: "other.example"})
	must(t, err, "ListOrders other.example")
	stored, err := s.GetOrder(ctx, "a2")
	must(t, err, "GetOrder a2")
	same(t, "ListOrders other.example", orders, []*storage.Order{stored})
}

func testAdminCounts(t *testing.T, s storage.Store) {
	a := admin(t, s)
	c, err := a.Counts(t.Context(), base)
	must(t, err, "Counts of an empty store")
	same(t, "Counts of an empty store", c, &storage.Counts{Accounts: map[string]int{}, Orders: map[string]int{}, Certificates: map[string]int{}})
	adminFixture(t, s)
	must(t, s.ReserveSerial(t.Context(), &storage.Certificate{Serial: "c0", Issuer: "E1", CreatedAt: base, Expires: at(day)}), "ReserveSerial c0")
	c, err = a.Counts(t.Context(), base)
	must(t, err, "Counts")
	same(t, "Counts", c, &storage.Counts{
		Accounts:     map[string]int{"valid": 2},
		Orders:       map[string]int{"valid": 2, "pending": 1},
		Certificates: map[string]int{"valid": 1, "intent": 1, "revoked": 1, "expired": 1, "reserved": 1},
	})
	// Eleven days on, the revoked certificate has expired too.
	c, err = a.Counts(t.Context(), at(11*day))
	must(t, err, "Counts later")
	same(t, "Counts later", c.Certificates, map[string]int{"valid": 1, "intent": 1, "expired": 2, "reserved": 1})
}

func testCRLRequests(t *testing.T, s storage.Store) {
	a, ctx := admin(t, s), t.Context()
	got, err := a.CRLRequested(ctx, "E1")
	must(t, err, "CRLRequested before any request")
	if !got.IsZero() {
		t.Fatalf("CRLRequested before any request: %v, want the zero time", got)
	}
	must(t, a.RequestCRL(ctx, "E1", at(time.Minute)), "RequestCRL")
	must(t, a.RequestCRL(ctx, "E1", at(2*time.Minute)), "RequestCRL again")
	got, err = a.CRLRequested(ctx, "E1")
	must(t, err, "CRLRequested")
	same(t, "CRLRequested", got, at(2*time.Minute))
	got, err = a.CRLRequested(ctx, "R1")
	must(t, err, "CRLRequested of another issuer")
	if !got.IsZero() {
		t.Fatalf("CRLRequested of another issuer: %v, want the zero time", got)
	}
	// A request is no lease anyone holds: a node takes the issuer's CRL lease
	// and the request's name alike.
	ok, err := s.TryLease(ctx, "crl/E1", "node-1", at(3*time.Minute), time.Minute)
	must(t, err, "TryLease crl/E1")
	if !ok {
		t.Fatal("TryLease crl/E1: refused after a CRL request")
	}
	// Housekeeping a day later removes the request.
	_, err = s.DeleteExpired(ctx, at(day))
	must(t, err, "DeleteExpired")
	got, err = a.CRLRequested(ctx, "E1")
	must(t, err, "CRLRequested after housekeeping")
	if !got.IsZero() {
		t.Fatalf("CRLRequested after housekeeping: %v, want the zero time", got)
	}
	if err := a.RequestCRL(ctx, "", base); err == nil {
		t.Fatal("RequestCRL without an issuer: no error")
	}
}
