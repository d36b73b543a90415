package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// testCRLShards: a certificate keeps the CRL shard it was reserved in; the
// revoked list, the revocation counts and the stored CRLs are per shard.
func testCRLShards(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for _, r := range []struct {
		serial, issuer string
		shard          int
		expires        time.Time
		reason         int // -1: not revoked
	}{
		{"a1", "r1", 0, at(90 * day), 1},
		{"a2", "r1", 3, at(90 * day), 4},
		{"a3", "r1", 3, at(30 * day), 0},
		{"a4", "r1", 3, at(90 * day), -1},
		{"a5", "r1", 7, at(90 * day), 5},
		{"a6", "r1", 7, at(2 * day), 1},  // expired at the time asked
		{"a7", "r2", 3, at(90 * day), 1}, // another issuer
	} {
		c := &storage.Certificate{Serial: r.serial, Issuer: r.issuer, Profile: "tlsserver", CreatedAt: base, Expires: r.expires, CRLShard: r.shard}
		must(t, s.ReserveSerial(ctx, c), "ReserveSerial "+r.serial)
		must(t, s.RecordLintCertificate(ctx, r.serial, []byte("lint")), "RecordLintCertificate")
		must(t, s.RecordIssuedCertificate(ctx, r.serial, []byte("cert")), "RecordIssuedCertificate")
		if r.reason >= 0 {
			must(t, s.RevokeCertificate(ctx, r.serial, at(time.Duration(len(r.serial)+int(r.serial[1]))*time.Minute), r.reason), "revoke "+r.serial)
		}
		got, err := s.GetCertificate(ctx, r.serial)
		must(t, err, "GetCertificate")
		same(t, "shard of "+r.serial, got.CRLShard, r.shard)
	}
	list, err := s.ListRevokedShard(ctx, "r1", 3, at(5*day))
	must(t, err, "ListRevokedShard")
	same(t, "r1 shard 3", list, []storage.Revoked{
		{Serial: "a2", RevokedAt: at(52 * time.Minute), Reason: 4, Expires: at(90 * day)},
		{Serial: "a3", RevokedAt: at(53 * time.Minute), Reason: 0, Expires: at(30 * day)},
	})
	list, err = s.ListRevokedShard(ctx, "r1", 7, at(5*day))
	must(t, err, "ListRevokedShard")
	same(t, "r1 shard 7", list, []storage.Revoked{{Serial: "a5", RevokedAt: at(55 * time.Minute), Reason: 5, Expires: at(90 * day)}})
	list, err = s.ListRevokedShard(ctx, "r1", 1, at(5*day))
	must(t, err, "ListRevokedShard of an empty shard")
	same(t, "r1 shard 1", len(list), 0)

	by, err := s.RevocationsByShard(ctx, "r1")
	must(t, err, "RevocationsByShard")
	same(t, "r1 revocations by shard", by, []storage.ShardRevocations{
		{Shard: 0, Count: 1, Latest: at(51 * time.Minute)},
		{Shard: 3, Count: 2, Latest: at(53 * time.Minute)},
		{Shard: 7, Count: 2, Latest: at(56 * time.Minute)},
	})

	// CRLs: one per issuer and shard; shard 0 is the unsharded issuer's CRL.
	heads, err := s.CRLHeads(ctx, "r1")
	must(t, err, "CRLHeads before any")
	same(t, "CRLs before any", len(heads), 0)
	_, err = s.GetCRLShard(ctx, "r1", 3)
	wantErr(t, err, storage.ErrNotFound, "CRL of shard 3 before any")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "r1", Shard: 3, Number: 10, ThisUpdate: at(0), NextUpdate: at(day), DER: []byte{3}}), "CRL of shard 3")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "r1", Shard: 0, Number: 5, ThisUpdate: at(0), NextUpdate: at(day), DER: []byte{0}}), "CRL of shard 0, a lower number")
	wantErr(t, s.PutCRL(ctx, &storage.CRL{Issuer: "r1", Shard: 3, Number: 10, ThisUpdate: at(time.Hour), NextUpdate: at(day), DER: []byte{4}}), storage.ErrConflict, "same number in the same shard")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "r1", Shard: 3, Number: 11, ThisUpdate: at(time.Hour), NextUpdate: at(2 * day), DER: []byte{5}}), "newer CRL of shard 3")
	must(t, s.PutCRL(ctx, &storage.CRL{Issuer: "r2", Shard: 3, Number: 1, ThisUpdate: at(0), NextUpdate: at(day), DER: []byte{6}}), "another issuer's shard 3")
	got, err := s.GetCRLShard(ctx, "r1", 3)
	must(t, err, "GetCRLShard")
	same(t, "CRL of shard 3", got, &storage.CRL{Issuer: "r1", Shard: 3, Number: 11, ThisUpdate: at(time.Hour), NextUpdate: at(2 * day), DER: []byte{5}})
	got, err = s.GetCRLShard(ctx, "r1", 0)
	must(t, err, "GetCRLShard 0")
	same(t, "shard 0, untouched by shard 3", got, &storage.CRL{Issuer: "r1", Shard: 0, Number: 5, ThisUpdate: at(0), NextUpdate: at(day), DER: []byte{0}})
	heads, err = s.CRLHeads(ctx, "r1")
	must(t, err, "CRLHeads")
	same(t, "CRL heads of r1", heads, []storage.CRL{
		{Issuer: "r1", Shard: 0, Number: 5, ThisUpdate: at(0), NextUpdate: at(day)},
		{Issuer: "r1", Shard: 3, Number: 11, ThisUpdate: at(time.Hour), NextUpdate: at(2 * day)},
	})
}
