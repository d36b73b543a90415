package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// testTimeRoundTrip: times come back in UTC at microsecond precision, whatever
// zone and precision they went in with; the zero time comes back zero.
func testTimeRoundTrip(t *testing.T, s storage.Store) {
	ctx := t.Context()
	zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
	in := time.Date(2031, time.March, 14, 20, 39, 26, 123456789, zone)
	want := time.Date(2031, time.March, 14, 15, 9, 26, 123456000, time.UTC)
	check := func(what string, got, want time.Time) {
		t.Helper()
		if got != want || got.Location() != time.UTC {
			t.Errorf("%s: got %s (%v), want %s in UTC", what, got.Format(time.RFC3339Nano), got.Location(), want.Format(time.RFC3339Nano))
		}
	}

	a := newAccount("key-a")
	a.CreatedAt = in
	must(t, s.CreateAccount(ctx, a), "CreateAccount")
	gotA, err := s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount")
	check("account CreatedAt", gotA.CreatedAt, want)

	z := newAuthz("authz-1", a.ID, dns("example.com"), "pending", in)
	z.CreatedAt, z.UpdatedAt = in, in
	z.Challenges[0].NextAttempt, z.Challenges[0].LeaseUntil, z.Challenges[0].UpdatedAt = in, in, in
	o := newOrder("order-1", a.ID, "pending", z)
	o.NotBefore, o.NotAfter, o.Expires, o.LeaseUntil, o.CreatedAt, o.UpdatedAt = in, in, in, in, in, in
	must(t, s.CreateOrder(ctx, o, []*storage.Authorization{z}), "CreateOrder")
	gotO, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	for what, got := range map[string]time.Time{
		"order NotBefore": gotO.NotBefore, "order NotAfter": gotO.NotAfter, "order Expires": gotO.Expires,
		"order LeaseUntil": gotO.LeaseUntil, "order CreatedAt": gotO.CreatedAt, "order UpdatedAt": gotO.UpdatedAt,
	} {
		check(what, got, want)
	}
	gotZ, err := s.GetAuthorization(ctx, z.ID)
	must(t, err, "GetAuthorization")
	check("authorization Expires", gotZ.Expires, want)
	check("authorization CreatedAt", gotZ.CreatedAt, want)
	check("authorization UpdatedAt", gotZ.UpdatedAt, want)
	c := gotZ.Challenges[0]
	check("challenge NextAttempt", c.NextAttempt, want)
	check("challenge LeaseUntil", c.LeaseUntil, want)
	check("challenge UpdatedAt", c.UpdatedAt, want)
	check("unset challenge Validated", c.Validated, time.Time{})
	check("unset challenge NextAttempt", gotZ.Challenges[1].NextAttempt, time.Time{})

	c.Status, c.Validated, c.UpdatedAt = "valid", in, in.Add(time.Nanosecond)
	must(t, s.UpdateChallenge(ctx, c, "pending"), "UpdateChallenge")
	gotC, err := s.GetChallenge(ctx, c.ID)
	must(t, err, "GetChallenge")
	check("challenge Validated", gotC.Validated, want)
	check("updated challenge UpdatedAt", gotC.UpdatedAt, want)

	cert := &storage.Certificate{Serial: "01", Issuer: "r1", CreatedAt: in, Expires: in}
	must(t, s.ReserveSerial(ctx, cert), "ReserveSerial")
	must(t, s.RecordLintCertificate(ctx, "01", []byte("lint")), "RecordLintCertificate")
	must(t, s.RecordIssuedCertificate(ctx, "01", []byte("cert")), "RecordIssuedCertificate")
	gotCert, err := s.GetCertificate(ctx, "01")
	must(t, err, "GetCertificate")
	check("unset certificate RevokedAt", gotCert.RevokedAt, time.Time{})
	must(t, s.RevokeCertificate(ctx, "01", in, 1), "RevokeCertificate")
	gotCert, err = s.GetCertificate(ctx, "01")
	must(t, err, "GetCertificate")
	for what, got := range map[string]time.Time{
		"certificate CreatedAt": gotCert.CreatedAt, "certificate Expires": gotCert.Expires, "certificate RevokedAt": gotCert.RevokedAt,
	} {
		check(what, got, want)
	}

	k := &storage.EABKey{ID: "kid", Key: []byte("k"), Algorithm: "HS256", CreatedAt: in}
	must(t, s.CreateEABKey(ctx, k), "CreateEABKey")
	gotK, err := s.GetEABKey(ctx, k.ID)
	must(t, err, "GetEABKey")
	check("EAB key CreatedAt", gotK.CreatedAt, want)

	// Far from now, both ways.
	for _, when := range []time.Time{
		time.Date(1970, time.January, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(1969, time.December, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(9999, time.December, 31, 23, 59, 59, 999999000, time.UTC),
	} {
		c := &storage.Certificate{Serial: when.Format("20060102150405.000000"), Issuer: "r1", CreatedAt: when, Expires: when}
		must(t, s.ReserveSerial(ctx, c), "ReserveSerial")
		got, err := s.GetCertificate(ctx, c.Serial)
		must(t, err, "GetCertificate")
		check("certificate Expires "+c.Serial, got.Expires, when)
	}
}

// testEmptyValues: nil stays nil, empty comes back nil, content comes back
// byte for byte.
func testEmptyValues(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := newAccount("key-a")
	a.Contact = []string{}
	must(t, s.CreateAccount(ctx, a), "CreateAccount")
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount")
	if got.Contact != nil {
		t.Errorf("empty Contact came back as %#v, want nil", got.Contact)
	}
	b := newAccount("key-b")
	b.Contact = nil
	must(t, s.CreateAccount(ctx, b), "CreateAccount")
	if got, err = s.GetAccount(ctx, b.ID); err != nil || got.Contact != nil {
		t.Errorf("nil Contact came back as %#v (%v), want nil", got.Contact, err)
	}
	odd := newAccount("key-c")
	odd.Contact = []string{`mailto:"quoted"@example.com`, "mailto:ünï@例え.jp", ""}
	must(t, s.CreateAccount(ctx, odd), "CreateAccount")
	got, err = s.GetAccount(ctx, odd.ID)
	must(t, err, "GetAccount")
	same(t, "contacts with quotes, Unicode and an empty string", got.Contact, odd.Contact)

	o := newOrder("order-1", a.ID, "pending")
	o.Error = []byte{}
	o.CSR = nil
	must(t, s.CreateOrder(ctx, o, nil), "CreateOrder")
	gotO, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	if gotO.Error != nil || gotO.CSR != nil || gotO.Identifiers != nil || gotO.AuthzIDs != nil {
		t.Errorf("empty fields came back non-nil: Error %#v, CSR %#v, Identifiers %#v, AuthzIDs %#v",
			gotO.Error, gotO.CSR, gotO.Identifiers, gotO.AuthzIDs)
	}
	gotO.Error = []byte{0x00, '{', 0xff, 0x00}
	gotO.Status = "invalid"
	must(t, s.UpdateOrder(ctx, gotO, "pending"), "UpdateOrder")
	again, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	same(t, "binary Error", again.Error, gotO.Error)
	again.Error = nil
	must(t, s.UpdateOrder(ctx, again, "invalid"), "UpdateOrder")
	if again, err = s.GetOrder(ctx, o.ID); err != nil || again.Error != nil {
		t.Errorf("cleared Error came back as %#v (%v), want nil", again.Error, err)
	}

	z := newAuthz("authz-1", a.ID, dns("example.com"), "pending", at(day))
	storeAuthzs(t, s, "order-2", z)
	gotC, err := s.GetChallenge(ctx, z.Challenges[0].ID)
	must(t, err, "GetChallenge")
	if gotC.Error != nil {
		t.Errorf("nil challenge Error came back as %#v", gotC.Error)
	}

	k := &storage.EABKey{ID: "kid", Key: []byte("k"), Algorithm: "HS256", AllowedSuffixes: []string{}, CreatedAt: base}
	must(t, s.CreateEABKey(ctx, k), "CreateEABKey")
	gotK, err := s.GetEABKey(ctx, k.ID)
	must(t, err, "GetEABKey")
	if gotK.AllowedSuffixes != nil {
		t.Errorf("empty AllowedSuffixes came back as %#v, want nil", gotK.AllowedSuffixes)
	}

	c := &storage.Certificate{Serial: "01", Issuer: "r1", CreatedAt: base, Expires: at(day)}
	must(t, s.ReserveSerial(ctx, c), "ReserveSerial")
	gotCert, err := s.GetCertificate(ctx, "01")
	must(t, err, "GetCertificate")
	if gotCert.LintDER != nil || gotCert.DER != nil {
		t.Errorf("unrecorded certificates came back as %#v and %#v, want nil", gotCert.LintDER, gotCert.DER)
	}
}

// testDefaults: a record created without an ID or a creation time gets both,
// and an update without UpdatedAt is stamped.
func testDefaults(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := newAccount("key-a")
	a.ID, a.CreatedAt = "", time.Time{}
	must(t, s.CreateAccount(ctx, a), "CreateAccount without ID")
	if a.ID == "" || a.CreatedAt.IsZero() {
		t.Fatalf("account created without ID or time got ID %q, CreatedAt %s", a.ID, a.CreatedAt)
	}
	got, err := s.GetAccount(ctx, a.ID)
	must(t, err, "GetAccount")
	same(t, "account with defaults", got, a)

	z := newAuthz("", a.ID, dns("example.com"), "pending", at(day))
	for _, c := range z.Challenges {
		c.ID, c.AuthzID = "", ""
	}
	o := newOrder("", a.ID, "pending")
	o.CreatedAt, o.UpdatedAt = time.Time{}, time.Time{}
	must(t, s.CreateOrder(ctx, o, []*storage.Authorization{z}), "CreateOrder without IDs")
	if o.ID == "" || z.ID == "" || z.Challenges[0].ID == "" || z.Challenges[0].AuthzID != z.ID || o.CreatedAt.IsZero() {
		t.Fatalf("IDs not assigned: order %q, authorization %q, challenge %q of %q", o.ID, z.ID, z.Challenges[0].ID, z.Challenges[0].AuthzID)
	}
	if z.Challenges[0].ID == z.Challenges[1].ID {
		t.Fatal("two challenges got one ID")
	}
	gotZ, err := s.GetAuthorization(ctx, z.ID)
	must(t, err, "GetAuthorization")
	same(t, "authorization with assigned IDs", gotZ, z)

	gotO, err := s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	gotO.Status, gotO.UpdatedAt = "ready", time.Time{}
	must(t, s.UpdateOrder(ctx, gotO, "pending"), "UpdateOrder without UpdatedAt")
	gotO, err = s.GetOrder(ctx, o.ID)
	must(t, err, "GetOrder")
	if gotO.UpdatedAt.IsZero() {
		t.Fatal("UpdateOrder without UpdatedAt left it zero")
	}
}
