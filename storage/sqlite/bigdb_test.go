package sqlite

import (
	"context"
	"crypto/x509"
	"flag"
	"math/big"
	mrand "math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/storage/storagetest"
)

var bigDBRows = flag.Int("bigdb-rows", 1000, "certificates BenchmarkBigDatabase seeds, e.g. 1000 or 100000")

// BenchmarkBigDatabase (`make bench-bigdb ROWS=N`) seeds a SQLite database
// with -bigdb-rows issued certificates, one in ten revoked, and measures
// what should not grow with it: the store's work of a complete issuance
// (finalize among it; p50/p99 of 300 in a row), an OCSP answer's read of a
// certificate by serial (p50/p99 of 2000 random ones), and a CRL of every
// revoked certificate: the list read from the store and the CRL built and
// signed on SoftHSM2 (one CRL per issuer, the publisher's read of shard 0;
// BenchmarkCRLShards measures sharded CRLs).
// Run it with -benchtime 1x.
func BenchmarkBigDatabase(b *testing.B) {
	rows := *bigDBRows
	if rows <= 0 {
		b.Fatalf("-bigdb-rows %d: want a positive count", rows)
	}
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "anvil.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tok := issuancetest.Token(b)
	iss := issuancetest.Issuer(b, tok, issuancetest.NewRoot(b), hsm.ECDSAP256)

	t0 := time.Now()
	serials, err := storagetest.SeedLedger(ctx, s, iss.Name(), rows, 10, 8)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d certificates (%d revoked) in %s", rows, (rows+9)/10, time.Since(t0).Round(time.Millisecond))

	flows, err := storagetest.FlowLatencies(ctx, s, 300)
	if err != nil {
		b.Fatal(err)
	}
	lookups := make([]time.Duration, 2000)
	for i := range lookups {
		serial := serials[mrand.IntN(len(serials))]
		t := time.Now()
		if _, err := s.GetCertificate(ctx, serial); err != nil {
			b.Fatal(err)
		}
		lookups[i] = time.Since(t)
	}
	sort.Slice(lookups, func(i, j int) bool { return lookups[i] < lookups[j] })

	now := time.Now().UTC()
	t1 := time.Now()
	revoked, err := s.ListRevokedShard(ctx, iss.Name(), 0, now)
	if err != nil {
		b.Fatal(err)
	}
	listed := time.Since(t1)
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			b.Fatalf("serial %q", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	signed, err := iss.SignCRL(ctx, big.NewInt(now.UnixMicro()), now, now.Add(24*time.Hour), entries)
	if err != nil {
		b.Fatal(err)
	}
	crl := time.Since(t1)

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(rows), "certificates")
	b.ReportMetric(ms(flows[len(flows)/2]), "flow_p50_ms")
	b.ReportMetric(ms(flows[len(flows)*99/100]), "flow_p99_ms")
	b.ReportMetric(ms(lookups[len(lookups)/2]), "ocsp_read_p50_ms")
	b.ReportMetric(ms(lookups[len(lookups)*99/100]), "ocsp_read_p99_ms")
	b.ReportMetric(float64(len(entries)), "crl_entries")
	b.ReportMetric(ms(listed), "crl_list_ms")
	b.ReportMetric(ms(crl), "crl_total_ms")
	b.ReportMetric(float64(len(signed.DER))/1024, "crl_KiB")
	b.ReportMetric(0, "ns/op")
}
