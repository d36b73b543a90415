package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// intent stores a reservation and its intent in one write, as issuance does,
// for holder.
func intent(t *testing.T, s storage.Store, serial, issuer, holder string) *storage.Certificate {
	t.Helper()
	c := &storage.Certificate{
		Serial: serial, Issuer: issuer, Profile: "tlsserver", OrderID: "order-" + serial,
		LintDER: []byte("lint-" + serial), CreatedAt: base, Expires: at(90 * day), Holder: holder,
	}
	must(t, s.ReserveSerial(t.Context(), c), "ReserveSerial with intent "+serial)
	return c
}

// testLedgerOutcomes checks that every row takes exactly one outcome.
func testLedgerOutcomes(t *testing.T, s storage.Store) {
	ctx := t.Context()
	issued := intent(t, s, "a1", "r1", "node-a")
	got, err := s.GetCertificate(ctx, "a1")
	must(t, err, "GetCertificate of an intent")
	same(t, "intent written with its reservation", got, issued)

	issued.DER = []byte("cert-a1")
	issued.Outcome = storage.OutcomeIssued
	must(t, s.RecordIssuedCertificate(ctx, "a1", issued.DER), "RecordIssuedCertificate")
	got, err = s.GetCertificate(ctx, "a1")
	must(t, err, "GetCertificate")
	same(t, "issued row", got, issued)
	wantErr(t, s.RecordNotSigned(ctx, "a1", storage.NotSignedHSMError), storage.ErrConflict, "RecordNotSigned of an issued row")

	for _, reason := range []string{storage.NotSignedHSMError, storage.NotSignedBadSignature} {
		c := intent(t, s, "b-"+reason, "r1", "node-a")
		must(t, s.RecordNotSigned(ctx, c.Serial, reason), "RecordNotSigned "+reason)
		c.Outcome, c.OutcomeReason = storage.OutcomeNotSigned, reason
		got, err := s.GetCertificate(ctx, c.Serial)
		must(t, err, "GetCertificate")
		same(t, "not signed row", got, c)
		wantErr(t, s.RecordNotSigned(ctx, c.Serial, reason), storage.ErrConflict, "RecordNotSigned twice")
		wantErr(t, s.RecordIssuedCertificate(ctx, c.Serial, []byte("cert")), storage.ErrConflict, "RecordIssuedCertificate after not signed")
		wantErr(t, s.RecordLintCertificate(ctx, c.Serial, []byte("lint")), storage.ErrConflict, "RecordLintCertificate after not signed")
	}
	wantErr(t, s.RecordNotSigned(ctx, "0bad", storage.NotSignedHSMError), storage.ErrNotFound, "RecordNotSigned of a serial never reserved")

	lost := intent(t, s, "d1", "r1", "node-a")
	must(t, s.AbandonIntent(ctx, "d1", at(time.Hour)), "AbandonIntent")
	lost.Outcome, lost.RevokedAt, lost.Reason = storage.OutcomeAbandoned, at(time.Hour), storage.ReasonCessationOfOperation
	got, err = s.GetCertificate(ctx, "d1")
	must(t, err, "GetCertificate")
	same(t, "abandoned row", got, lost)
	wantErr(t, s.AbandonIntent(ctx, "d1", at(time.Hour)), storage.ErrConflict, "AbandonIntent twice")
	wantErr(t, s.AbandonIntent(ctx, "a1", at(time.Hour)), storage.ErrConflict, "AbandonIntent of an issued row")
	wantErr(t, s.AbandonIntent(ctx, "0bad", at(time.Hour)), storage.ErrNotFound, "AbandonIntent of a serial never reserved")
	must(t, s.ReserveSerial(ctx, &storage.Certificate{Serial: "c1", Issuer: "r1", CreatedAt: base, Expires: at(90 * day)}), "ReserveSerial")
	wantErr(t, s.RecordNotSigned(ctx, "c1", storage.NotSignedHSMError), storage.ErrConflict, "RecordNotSigned of a serial without intent")
}

// testAbandonIntents checks that open intents are abandoned and published as
// revoked (cessationOfOperation), and nothing else is touched.
func testAbandonIntents(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := intent(t, s, "a1", "r1", "node-a")
	b := intent(t, s, "b1", "r1", "node-b")
	done := intent(t, s, "a2", "r1", "node-a")
	must(t, s.RecordIssuedCertificate(ctx, "a2", []byte("cert-a2")), "RecordIssuedCertificate")
	notSigned := intent(t, s, "a3", "r1", "node-a")
	must(t, s.RecordNotSigned(ctx, "a3", storage.NotSignedHSMError), "RecordNotSigned")
	bare := &storage.Certificate{Serial: "a4", Issuer: "r1", CreatedAt: base, Expires: at(90 * day), Holder: "node-a"}
	must(t, s.ReserveSerial(ctx, bare), "ReserveSerial without intent")

	when := at(time.Hour)
	n, err := s.AbandonIntents(ctx, "node-a", when)
	must(t, err, "AbandonIntents node-a")
	if n != 1 {
		t.Fatalf("AbandonIntents(node-a) abandoned %d rows, want 1 (a1)", n)
	}
	a.Outcome, a.RevokedAt, a.Reason = storage.OutcomeAbandoned, when, storage.ReasonCessationOfOperation
	got, err := s.GetCertificate(ctx, "a1")
	must(t, err, "GetCertificate")
	same(t, "abandoned intent", got, a)
	got, err = s.GetCertificate(ctx, "a4")
	must(t, err, "GetCertificate")
	bare.Outcome, bare.OutcomeReason = storage.OutcomeNotSigned, storage.NotSignedNoIntent
	same(t, "reservation without intent", got, bare)
	for _, c := range []*storage.Certificate{b, done, notSigned} {
		got, err := s.GetCertificate(ctx, c.Serial)
		must(t, err, "GetCertificate")
		if !got.RevokedAt.IsZero() || got.Outcome == storage.OutcomeAbandoned {
			t.Fatalf("%s (holder %s, outcome %q) was abandoned too", c.Serial, c.Holder, c.Outcome)
		}
	}
	wantErr(t, s.RecordIssuedCertificate(ctx, "a1", []byte("late cert")), storage.ErrConflict,
		"RecordIssuedCertificate of an abandoned intent (it is published revoked)")

	revoked, err := s.ListRevokedShard(ctx, "r1", 0, base)
	must(t, err, "ListRevokedShard")
	same(t, "the CRL's entries", revoked, []storage.Revoked{{Serial: "a1", RevokedAt: when, Reason: storage.ReasonCessationOfOperation, Expires: a.Expires}})
	count, latest, err := revocationsOf(ctx, s, "r1")
	must(t, err, "RevocationsByShard")
	if count != 1 || !latest.Equal(when) {
		t.Fatalf("revocations = %d, %v; want 1, %v: a CRL publisher must see the abandoned serial", count, latest, when)
	}

	n, err = s.AbandonIntents(ctx, "", when)
	must(t, err, "AbandonIntents of every holder")
	if n != 1 {
		t.Fatalf("AbandonIntents(\"\") abandoned %d rows, want 1 (b1)", n)
	}
	open, err := s.OpenIntents(ctx, "node/", when)
	must(t, err, "OpenIntents")
	if len(open) != 0 {
		t.Fatalf("open rows left: %v", dump(open))
	}
}

// testAbandonOrphanedIntents checks the sweep: only the intents of holders
// whose node lease has run out are abandoned.
func testAbandonOrphanedIntents(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ok, err := s.TryLease(ctx, "node/live", "live", base, time.Minute)
	must(t, err, "TryLease")
	if !ok {
		t.Fatal("TryLease of a free lease failed")
	}
	_, err = s.TryLease(ctx, "node/dead", "dead", at(-time.Hour), time.Minute)
	must(t, err, "TryLease")
	intent(t, s, "01", "r1", "live")
	intent(t, s, "02", "r1", "dead")
	intent(t, s, "03", "r1", "never-leased")

	open, err := s.OpenIntents(ctx, "node/", at(time.Minute))
	must(t, err, "OpenIntents")
	live := map[string]bool{}
	for _, o := range open {
		live[o.Serial] = o.HolderLive
		if !o.HasIntent || o.Issuer != "r1" || o.OrderID != "order-"+o.Serial || !o.CreatedAt.Equal(base) {
			t.Fatalf("open intent read back wrong: %v", dump(o))
		}
	}
	same(t, "open intents and whether their holder is live (a lease ending now is live)", live,
		map[string]bool{"01": true, "02": false, "03": false})

	n, err := s.AbandonOrphanedIntents(ctx, "node/", at(time.Minute))
	must(t, err, "AbandonOrphanedIntents")
	if n != 2 {
		t.Fatalf("AbandonOrphanedIntents abandoned %d rows, want 2", n)
	}
	open, err = s.OpenIntents(ctx, "node/", at(time.Minute))
	must(t, err, "OpenIntents")
	if len(open) != 1 || open[0].Serial != "01" {
		t.Fatalf("open rows after the sweep: %v, want only 01 (its holder is live)", dump(open))
	}
}

func testLedgerCounts(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for i, serial := range []string{"01", "02", "03"} {
		intent(t, s, serial, "r1", "n")
		if i < 2 {
			must(t, s.RecordIssuedCertificate(ctx, serial, []byte("cert")), "RecordIssuedCertificate")
		}
	}
	intent(t, s, "04", "e1", "n")
	must(t, s.RecordNotSigned(ctx, "04", storage.NotSignedBadSignature), "RecordNotSigned")
	intent(t, s, "05", "e1", "n")
	_, err := s.AbandonIntents(ctx, "n", base)
	must(t, err, "AbandonIntents")
	intent(t, s, "06", "e1", "n")
	got, err := s.LedgerCounts(ctx)
	must(t, err, "LedgerCounts")
	same(t, "ledger counts", got, []storage.LedgerCount{
		{Issuer: "e1", Outcome: "", Count: 1},
		{Issuer: "e1", Outcome: storage.OutcomeAbandoned, Count: 1},
		{Issuer: "e1", Outcome: storage.OutcomeNotSigned, Reason: storage.NotSignedBadSignature, Count: 1},
		{Issuer: "r1", Outcome: storage.OutcomeAbandoned, Count: 1},
		{Issuer: "r1", Outcome: storage.OutcomeIssued, Count: 2},
	})
}

// testReleaseLeases checks that released leases are free at once: a
// restarted process resumes its predecessor's work without waiting.
func testReleaseLeases(t *testing.T, s storage.Store) {
	ctx := t.Context()
	take := func(name, holder string, now time.Time) bool {
		ok, err := s.TryLease(ctx, name, holder, now, time.Hour)
		must(t, err, "TryLease")
		return ok
	}
	if !take("crl/r1", "old", base) {
		t.Fatal("TryLease of a free lease failed")
	}
	must(t, s.ReleaseLease(ctx, "crl/r1", "other"), "ReleaseLease by another holder")
	if take("crl/r1", "new", at(time.Second)) {
		t.Fatal("a lease released by someone who does not hold it was freed")
	}
	must(t, s.ReleaseLease(ctx, "crl/r1", "old"), "ReleaseLease")
	if !take("crl/r1", "new", at(time.Second)) {
		t.Fatal("a released lease could not be taken")
	}

	acct := createAccount(t, s, "key-a")
	z := newAuthz("z1", acct.ID, dns("a.example"), "pending", at(7*day))
	z.Challenges[0].Status, z.Challenges[0].NextAttempt, z.Challenges[0].LeaseUntil = "processing", base, at(time.Minute)
	o := newOrder("o1", acct.ID, "processing", z)
	o.LeaseUntil = at(time.Minute)
	must(t, s.CreateOrder(ctx, o, []*storage.Authorization{z}), "CreateOrder")

	now := at(time.Second)
	if os, err := s.ClaimOrders(ctx, now, time.Minute, 10); err != nil || len(os) != 0 {
		t.Fatalf("ClaimOrders of a leased order = %d, %v; want none", len(os), err)
	}
	// An operator's CRL request waits for the publisher across a restart.
	a, isAdmin := s.(storage.Admin)
	if isAdmin {
		must(t, a.RequestCRL(ctx, "r1", base), "RequestCRL")
	}
	n, err := s.ReleaseAllLeases(ctx)
	must(t, err, "ReleaseAllLeases")
	if n != 2 {
		t.Fatalf("ReleaseAllLeases freed %d orders and challenges, want 2", n)
	}
	os, err := s.ClaimOrders(ctx, now, time.Minute, 10)
	must(t, err, "ClaimOrders")
	if len(os) != 1 || os[0].ID != "o1" {
		t.Fatalf("ClaimOrders after ReleaseAllLeases = %d orders, want o1", len(os))
	}
	cs, err := s.ClaimChallenges(ctx, now, time.Minute, 10)
	must(t, err, "ClaimChallenges")
	if len(cs) != 1 || cs[0].ID != z.Challenges[0].ID {
		t.Fatalf("ClaimChallenges after ReleaseAllLeases = %d challenges, want %s", len(cs), z.Challenges[0].ID)
	}
	if !take("crl/r1", "newer", now) {
		t.Fatal("a named lease survived ReleaseAllLeases")
	}
	if isAdmin {
		if got, err := a.CRLRequested(ctx, "r1"); err != nil || !got.Equal(base) {
			t.Fatalf("CRLRequested after ReleaseAllLeases = %v, %v; want the request of %v kept", got, err, base)
		}
	}
}

// testReleaseLeasesOf checks that leases on orders and challenges name their
// holder, and that a holder's leases, and only those, can be released at once:
// a node restarting under its identity takes its own work back.
func testReleaseLeasesOf(t *testing.T, s storage.Store) {
	ctx := t.Context()
	acct := createAccount(t, s, "key-a")
	lease := at(time.Hour)
	var orders []*storage.Order
	for i, holder := range []string{"node-a", "node-b"} {
		z := newAuthz(name("z", i), acct.ID, dns(name("z", i)+".example"), "pending", at(7*day))
		o := newOrder(name("o", i), acct.ID, "pending", z)
		must(t, s.CreateOrder(ctx, o, []*storage.Authorization{z}), "CreateOrder")
		s.SetLeaseHolder(holder)
		next := *o
		next.Status, next.LeaseUntil = "processing", lease
		must(t, s.UpdateOrder(ctx, &next, "pending"), "UpdateOrder to processing")
		c := *z.Challenges[0]
		c.Status, c.NextAttempt, c.LeaseUntil = "processing", base, lease
		must(t, s.UpdateChallenge(ctx, &c, "pending"), "UpdateChallenge to processing")
		orders = append(orders, &next)
	}
	n, err := s.ReleaseLeasesOf(ctx, "node-a")
	must(t, err, "ReleaseLeasesOf")
	if n != 2 {
		t.Fatalf("ReleaseLeasesOf(node-a) freed %d orders and challenges, want 2", n)
	}
	now := at(time.Minute)
	os, err := s.ClaimOrders(ctx, now, time.Minute, 10)
	must(t, err, "ClaimOrders")
	if len(os) != 1 || os[0].ID != orders[0].ID {
		t.Fatalf("ClaimOrders after node-a's release: %d orders, want only %s", len(os), orders[0].ID)
	}
	cs, err := s.ClaimChallenges(ctx, now, time.Minute, 10)
	must(t, err, "ClaimChallenges")
	if len(cs) != 1 || cs[0].ID != "z-00-http" {
		t.Fatalf("ClaimChallenges after node-a's release: %d challenges, want only z-00-http", len(cs))
	}
	// The claims were written under node-b's name (the store's holder now).
	n, err = s.ReleaseLeasesOf(ctx, "node-b")
	must(t, err, "ReleaseLeasesOf")
	if n != 4 {
		t.Fatalf("ReleaseLeasesOf(node-b) freed %d, want 4: its own two and the two it claimed", n)
	}
}
