package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// testLedger walks one serial through the issuance ledger and checks that every
// step out of order is refused: nothing is signed without a record.
func testLedger(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c := &storage.Certificate{
		Serial: "7f3a9c0d1e2b", Issuer: "r1", Profile: "tlsserver", OrderID: "order-1",
		CreatedAt: base, Expires: at(90 * day),
	}
	must(t, s.ReserveSerial(ctx, c), "ReserveSerial")
	dup := *c
	dup.Issuer = "e1"
	wantErr(t, s.ReserveSerial(ctx, &dup), storage.ErrConflict, "ReserveSerial of a reserved serial")

	got, err := s.GetCertificate(ctx, c.Serial)
	must(t, err, "GetCertificate of a reservation")
	same(t, "reservation", got, c)

	wantErr(t, s.RecordIssuedCertificate(ctx, c.Serial, []byte("cert")), storage.ErrConflict,
		"RecordIssuedCertificate before RecordLintCertificate")
	wantErr(t, s.RecordLintCertificate(ctx, "0bad", []byte("lint")), storage.ErrNotFound,
		"RecordLintCertificate of a serial never reserved")

	c.LintDER = []byte{0x30, 0x82, 0x02, 0x00, 0x00, 0xff}
	must(t, s.RecordLintCertificate(ctx, c.Serial, c.LintDER), "RecordLintCertificate")
	wantErr(t, s.RecordLintCertificate(ctx, c.Serial, []byte("other lint")), storage.ErrConflict,
		"RecordLintCertificate twice")

	c.DER = []byte{0x30, 0x82, 0x03, 0x00, 0x01, 0xfe}
	c.Outcome = storage.OutcomeIssued
	must(t, s.RecordIssuedCertificate(ctx, c.Serial, c.DER), "RecordIssuedCertificate")
	wantErr(t, s.RecordIssuedCertificate(ctx, c.Serial, []byte("other cert")), storage.ErrConflict,
		"RecordIssuedCertificate twice")
	wantErr(t, s.RecordIssuedCertificate(ctx, "0bad", []byte("cert")), storage.ErrNotFound,
		"RecordIssuedCertificate of a serial never reserved")

	got, err = s.GetCertificate(ctx, c.Serial)
	must(t, err, "GetCertificate")
	same(t, "issued certificate", got, c)
	_, err = s.GetCertificate(ctx, "0bad")
	wantErr(t, err, storage.ErrNotFound, "GetCertificate of a serial never reserved")
}

func testCertificatesForOrder(t *testing.T, s storage.Store) {
	ctx := t.Context()
	third := reserve(t, s, "03", "r1", "order-1", at(2*time.Minute), at(90*day), false)
	first := reserve(t, s, "01", "r1", "order-1", at(0), at(90*day), true)
	second := reserve(t, s, "02", "e1", "order-1", at(time.Minute), at(90*day), true)
	reserve(t, s, "04", "r1", "order-2", at(0), at(90*day), true)
	reserve(t, s, "05", "r1", "", at(0), at(90*day), true)
	bare := &storage.Certificate{Serial: "06", Issuer: "r1", OrderID: "order-1", CreatedAt: at(3 * time.Minute), Expires: at(90 * day)}
	must(t, s.ReserveSerial(ctx, bare), "ReserveSerial")

	got, err := s.CertificatesForOrder(ctx, "order-1")
	must(t, err, "CertificatesForOrder")
	same(t, "ledger entries of order-1, oldest first", got, []*storage.Certificate{first, second, third, bare})

	got, err = s.CertificatesForOrder(ctx, "no-such-order")
	must(t, err, "CertificatesForOrder of an unknown order")
	if len(got) != 0 {
		t.Fatalf("unknown order has %d ledger entries", len(got))
	}
}

func testRevocation(t *testing.T, s storage.Store) {
	ctx := t.Context()
	must(t, s.ReserveSerial(ctx, &storage.Certificate{Serial: "0e", Issuer: "r1", CreatedAt: base, Expires: at(90 * day)}),
		"ReserveSerial")
	wantErr(t, s.RevokeCertificate(ctx, "0e", base, 1), storage.ErrNotFound, "revoking a reserved serial")
	reserve(t, s, "0f", "r1", "", base, at(90*day), false)
	wantErr(t, s.RevokeCertificate(ctx, "0f", base, 1), storage.ErrNotFound, "revoking a serial that was only linted")
	wantErr(t, s.RevokeCertificate(ctx, "0bad", base, 1), storage.ErrNotFound, "revoking a serial never reserved")

	c := reserve(t, s, "0c", "r1", "order-1", base, at(90*day), true)
	must(t, s.RevokeCertificate(ctx, c.Serial, at(time.Hour), 1), "RevokeCertificate")
	wantErr(t, s.RevokeCertificate(ctx, c.Serial, at(2*time.Hour), 4), storage.ErrConflict, "revoking twice")
	got, err := s.GetCertificate(ctx, c.Serial)
	must(t, err, "GetCertificate")
	c.RevokedAt, c.Reason = at(time.Hour), 1
	same(t, "revoked certificate", got, c)

	// More for the CRL: revoked in another order than their serials sort.
	for _, r := range []struct {
		serial, issuer string
		expires        time.Time
		reason         int
	}{
		{"0a", "r1", at(30 * day), 0},
		{"1b", "r1", at(60 * day), 4},
		{"0b", "r1", at(10 * day), 5},
		{"ee", "e1", at(90 * day), 1},    // another issuer
		{"0d", "r1", at(5 * day), 1},     // expires exactly at expiresAfter
		{"09", "r1", at(4 * day), 1},     // expired before
		{"08", "r1", at(90 * day), -100}, // not revoked below
	} {
		reserve(t, s, r.serial, r.issuer, "", base, r.expires, true)
		if r.reason >= 0 {
			must(t, s.RevokeCertificate(ctx, r.serial, at(2*time.Hour), r.reason), "RevokeCertificate "+r.serial)
		}
	}
	list, err := s.ListRevokedShard(ctx, "r1", 0, at(5*day))
	must(t, err, "ListRevokedShard")
	same(t, "ListRevokedShard r1", list, []storage.Revoked{
		{Serial: "0a", RevokedAt: at(2 * time.Hour), Reason: 0, Expires: at(30 * day)},
		{Serial: "0b", RevokedAt: at(2 * time.Hour), Reason: 5, Expires: at(10 * day)},
		{Serial: "0c", RevokedAt: at(time.Hour), Reason: 1, Expires: at(90 * day)},
		{Serial: "1b", RevokedAt: at(2 * time.Hour), Reason: 4, Expires: at(60 * day)},
	})
	list, err = s.ListRevokedShard(ctx, "no-such-issuer", 0, base)
	must(t, err, "ListRevokedShard of an unknown issuer")
	if len(list) != 0 {
		t.Fatalf("unknown issuer has %d revoked", len(list))
	}
}

func testCRLs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	_, err := s.GetCRLShard(ctx, "int-ecdsa", 0)
	wantErr(t, err, storage.ErrNotFound, "CRL before any")
	n, latest, err := revocationsOf(ctx, s, "int-ecdsa")
	must(t, err, "latest revocation, none")
	same(t, "revocations before any", n, 0)
	same(t, "latest before any", latest.IsZero(), true)

	first := &storage.CRL{Issuer: "int-ecdsa", Number: 100, ThisUpdate: at(0), NextUpdate: at(7 * day), DER: []byte{1}}
	must(t, s.PutCRL(ctx, first), "first CRL")
	wantErr(t, s.PutCRL(ctx, &storage.CRL{Issuer: "int-ecdsa", Number: 100, ThisUpdate: at(time.Hour), NextUpdate: at(7 * day), DER: []byte{2}}), storage.ErrConflict, "same number again")
	wantErr(t, s.PutCRL(ctx, &storage.CRL{Issuer: "int-ecdsa", Number: 99, ThisUpdate: at(time.Hour), NextUpdate: at(7 * day), DER: []byte{3}}), storage.ErrConflict, "older number")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "int-ecdsa", Number: 101, ThisUpdate: at(time.Hour), NextUpdate: at(8 * day), DER: []byte{4}}), "newer CRL")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "int-rsa", Number: 1, ThisUpdate: at(0), NextUpdate: at(day), DER: []byte{5}}), "another issuer")
	got, err := s.GetCRLShard(ctx, "int-ecdsa", 0)
	must(t, err, "get CRL")
	if got.Number != 101 || string(got.DER) != "\x04" || !got.ThisUpdate.Equal(at(time.Hour)) || !got.NextUpdate.Equal(at(8*day)) {
		t.Fatalf("CRL: %s", dump(got))
	}

	a := createAccount(t, s, "k-crl")
	az := newAuthz("az-crl", a.ID, dns("crl.example.com"), "valid", at(day))
	o := storeAuthzs(t, s, "o-crl", az)
	reserve(t, s, "aa01", "int-ecdsa", o.ID, at(0), at(90*day), true)
	reserve(t, s, "aa02", "int-ecdsa", o.ID, at(0), at(90*day), true)
	reserve(t, s, "aa03", "int-rsa", o.ID, at(0), at(90*day), true)
	must(t, s.RevokeCertificate(ctx, "aa01", at(time.Minute), 1), "revoke aa01")
	must(t, s.RevokeCertificate(ctx, "aa02", at(2*time.Minute), 4), "revoke aa02")
	must(t, s.RevokeCertificate(ctx, "aa03", at(3*time.Minute), 4), "revoke aa03")
	n, latest, err = revocationsOf(ctx, s, "int-ecdsa")
	must(t, err, "latest revocation")
	if n != 2 || !latest.Equal(at(2*time.Minute)) {
		t.Fatalf("latest revocation of int-ecdsa: %d at %s", n, latest)
	}
}
