package sqlite

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/storagetest"
)

var (
	crlBenchDB   = flag.String("crl-db", "", "database file BenchmarkCRLShards keeps between runs (seeded with -bigdb-rows when it holds fewer); default a temporary one")
	crlBenchRuns = flag.Int("crl-runs", 3, "rounds of BenchmarkCRLShards")
)

// BenchmarkCRLShards (`make bench-crl ROWS=N DB=/tmp/crl.db`) measures CRL
// generation on a ledger of -bigdb-rows certificates, one in ten revoked,
// kept in -crl-db so that a million rows are seeded once. Each round:
//
//   - the revoked list of an unsharded issuer, read as before migration 0007
//     (the old (issuer, serial) partial index, each entry reading its table
//     row) and as now (the covering index), one after the other;
//   - the CRL of the unsharded issuer, read and signed on SoftHSM2;
//   - the 16 CRLs of the same certificates in 16 shards, each read and
//     signed: time and size per shard.
//
// The revoked rows are moved between one shard and sixteen (shard = serial
// mod 16, as issuance picks it) by an UPDATE between the phases; the caches
// are warm (each query runs once before it is timed). Run with -benchtime 1x.
func BenchmarkCRLShards(b *testing.B) {
	rows := *bigDBRows
	ctx := context.Background()
	path := *crlBenchDB
	if path == "" {
		path = filepath.Join(b.TempDir(), "anvil.db")
	}
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tok := issuancetest.Token(b)
	iss := issuancetest.Issuer(b, tok, issuancetest.NewRoot(b), hsm.ECDSAP256)
	var have int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM certificates WHERE issuer = ?`, iss.Name()).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have < rows {
		t0 := time.Now()
		if _, err := storagetest.SeedLedgerShards(ctx, s, iss.Name(), rows-have, 10, 16, 8); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d certificates into %s in %s", rows-have, path, time.Since(t0).Round(time.Second))
		have = rows
	}
	if fi, err := os.Stat(path); err == nil {
		b.Logf("%s: %d certificates of %s, %.0f MiB", path, have, iss.Name(), float64(fi.Size())/(1<<20))
	}
	// The index of migration 0001, for the "before" read.
	t0 := time.Now()
	if _, err := s.w.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS bench_revoked_0001 ON certificates (issuer, serial) WHERE revoked_at IS NOT NULL`); err != nil {
		b.Fatal(err)
	}
	b.Logf("old index ready in %s", time.Since(t0).Round(time.Millisecond))
	defer s.w.ExecContext(ctx, `DROP INDEX IF EXISTS bench_revoked_0001`)

	setShards := func(n int) {
		t0 := time.Now()
		q := `UPDATE certificates SET crl_shard = 0 WHERE issuer = ? AND revoked_at IS NOT NULL AND crl_shard != 0`
		if n == 16 {
			q = `UPDATE certificates SET crl_shard = instr('0123456789abcdef', substr(serial, -1)) - 1 WHERE issuer = ? AND revoked_at IS NOT NULL`
		}
		if _, err := s.w.ExecContext(ctx, q, iss.Name()); err != nil {
			b.Fatal(err)
		}
		b.Logf("revoked rows moved to %d shard(s) in %s", n, time.Since(t0).Round(time.Millisecond))
	}
	now := time.Now().UTC()
	oldList := func() (int, time.Duration) {
		t0 := time.Now()
		list, err := s.listRevoked(ctx, "old list", `SELECT serial, revoked_at, reason, expires FROM certificates INDEXED BY bench_revoked_0001
			WHERE issuer = ? AND revoked_at IS NOT NULL AND expires > ? ORDER BY serial`, iss.Name(), micros(now))
		if err != nil {
			b.Fatal(err)
		}
		return len(list), time.Since(t0)
	}
	type made struct {
		entries    int
		list, sign time.Duration
		size       int
	}
	makeCRL := func(shard int) made {
		t0 := time.Now()
		list, err := s.ListRevokedShard(ctx, iss.Name(), shard, now)
		if err != nil {
			b.Fatal(err)
		}
		listed := time.Since(t0)
		signed, err := iss.SignShardCRL(ctx, shard, big.NewInt(now.UnixMicro()), now, now.Add(24*time.Hour), entriesOf(b, list))
		if err != nil {
			b.Fatal(err)
		}
		return made{len(list), listed, time.Since(t0) - listed, len(signed.DER)}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	runs := max(*crlBenchRuns, 1)

	// The publisher's check every crl_check_interval: has anything been
	// revoked since? Before 0007 the latest revocation time came from the
	// table rows; now from the index.
	oldCheck := func() time.Duration {
		t0 := time.Now()
		var n int
		var latest int64
		if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), MAX(revoked_at) FROM certificates INDEXED BY bench_revoked_0001
			WHERE issuer = ? AND revoked_at IS NOT NULL`, iss.Name()).Scan(&n, &latest); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	newCheck := func() time.Duration {
		t0 := time.Now()
		if _, err := s.RevocationsByShard(ctx, iss.Name()); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	oldCheck()
	newCheck()
	var oldChecks, newChecks []float64
	for range runs {
		oldChecks, newChecks = append(oldChecks, ms(oldCheck())), append(newChecks, ms(newCheck()))
	}
	b.Logf("revocation check (every crl_check_interval): with the 0001 index %v ms, per shard from the covering index %v ms", oldChecks, newChecks)

	// One shard: old read, new read, the whole CRL.
	setShards(1)
	oldList()
	makeCRL(0) // warm
	var oldMs, newMs, oneTotal []float64
	var one made
	for r := range runs {
		n, d := oldList()
		one = makeCRL(0)
		if n != one.entries {
			b.Fatalf("old read %d entries, new %d", n, one.entries)
		}
		oldMs, newMs, oneTotal = append(oldMs, ms(d)), append(newMs, ms(one.list)), append(oneTotal, ms(one.list+one.sign))
		b.Logf("round %d, 1 shard: %d entries; list read with the 0001 index %.0f ms, with the covering index %.0f ms; read+sign %.0f ms; CRL %.0f KiB",
			r+1, one.entries, ms(d), ms(one.list), ms(one.list+one.sign), float64(one.size)/1024)
	}

	// Sixteen shards.
	setShards(16)
	for k := range 16 {
		makeCRL(k) // warm
	}
	var shardTotal, allTotal []float64
	var sizes []float64
	for r := range runs {
		var per []string
		var sum time.Duration
		entries := 0
		for k := range 16 {
			m := makeCRL(k)
			sum += m.list + m.sign
			entries += m.entries
			shardTotal = append(shardTotal, ms(m.list+m.sign))
			sizes = append(sizes, float64(m.size)/1024)
			per = append(per, fmt.Sprintf("%d:%d/%.0f+%.0fms/%.0fKiB", k, m.entries, ms(m.list), ms(m.sign), float64(m.size)/1024))
		}
		if entries != one.entries {
			b.Fatalf("16 shards list %d entries, 1 shard %d", entries, one.entries)
		}
		allTotal = append(allTotal, ms(sum))
		b.Logf("round %d, 16 shards: all 16 read+signed in %.0f ms; shard:entries/read+sign/size %s", r+1, ms(sum), strings.Join(per, " "))
	}
	setShards(1)

	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(float64(have), "certificates")
	b.ReportMetric(float64(one.entries), "revoked")
	b.ReportMetric(med(oldChecks), "check_0001_ms")
	b.ReportMetric(med(newChecks), "check_covering_ms")
	b.ReportMetric(med(oldMs), "list_0001_ms")
	b.ReportMetric(med(newMs), "list_covering_ms")
	b.ReportMetric(med(oneTotal), "crl1_total_ms")
	b.ReportMetric(float64(one.size)/1024, "crl1_KiB")
	b.ReportMetric(med(shardTotal), "shard16_each_ms")
	b.ReportMetric(slices.Max(shardTotal), "shard16_max_ms")
	b.ReportMetric(med(sizes), "shard16_each_KiB")
	b.ReportMetric(med(allTotal), "shard16_all_ms")
	b.ReportMetric(0, "ns/op")
}

func entriesOf(b *testing.B, list []storage.Revoked) []x509.RevocationListEntry {
	entries := make([]x509.RevocationListEntry, 0, len(list))
	for _, r := range list {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			b.Fatalf("serial %q", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	return entries
}
