package storagetest

import (
	"context"
	"crypto/x509"
	"math/big"
	mrand "math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// MeasureBigDatabase reports, for a store seeded with rows certificates of
// iss (serial(i) names the i-th), what should not grow with the store: the
// store's work of a complete issuance (p50/p99 of 300 in a row), an OCSP
// answer's read of a certificate by serial (p50/p99 of 2000 random ones), and
// the CRL of every revoked certificate as the publisher makes shard 0: the
// list read from the store, then the CRL built and signed by iss. It is the
// body of each database's BenchmarkBigDatabase, which seed in their own way.
func MeasureBigDatabase(b *testing.B, s storage.Store, iss *issuance.Issuer, rows int, serial func(i int) string) {
	b.Helper()
	ctx := context.Background()
	flows, err := FlowLatencies(ctx, s, 300)
	if err != nil {
		b.Fatal(err)
	}
	lookups := make([]time.Duration, 2000)
	for i := range lookups {
		sn := serial(mrand.IntN(rows))
		t := time.Now()
		if _, err := s.GetCertificate(ctx, sn); err != nil {
			b.Fatalf("certificate %s: %v", sn, err)
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
		sn, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			b.Fatalf("serial %q", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
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
