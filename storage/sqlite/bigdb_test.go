package sqlite

import (
	"context"
	"flag"
	"path/filepath"
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

	storagetest.MeasureBigDatabase(b, s, iss, rows, func(i int) string { return serials[i] })
}
