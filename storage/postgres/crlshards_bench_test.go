package postgres

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
)

var pgBenchRows = flag.Int("pg-rows", 100000, "certificates BenchmarkCRLShardsPostgres writes, one in ten revoked")

// BenchmarkCRLShardsPostgres (`make bench-crl-pg ROWS=N`) measures on
// PostgreSQL what migration 0007 changes at scale: a ledger of -pg-rows
// certificates (one in ten revoked, 2.3 KB of random DER each, written by
// SQL) is built at schema version 6; the revoked list is read as before
// (partial index on (issuer, serial), heap rows read); migration 0007 is
// applied and timed; the list is read again through the covering index, for
// one shard and then for each of 16. Three timed reads each, caches warm,
// after VACUUM ANALYZE (as autovacuum would have done; an index-only scan
// needs the visibility map). Run with -benchtime 1x.
func BenchmarkCRLShardsPostgres(b *testing.B) {
	ctx := context.Background()
	rows := *pgBenchRows
	dsn := pgtest.Start(b)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ms, err := loadMigrations()
	if err != nil {
		b.Fatal(err)
	}
	exec := func(what, q string, args ...any) time.Duration {
		t0 := time.Now()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return time.Since(t0)
	}
	exec("schema_migrations", `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	for _, m := range ms[:6] {
		exec(m.Name, m.SQL)
		exec(m.Name, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
	}
	d := exec("seed", `INSERT INTO certificates (serial, issuer, profile, order_id, lint_der, der, created_at, expires, revoked_at, reason, outcome)
		SELECT '7e' || lpad(to_hex(i), 14, '0') || substr(md5(i::text), 1, 16), 'int', 'tls', '', blob, blob,
			now(), now() + interval '90 days',
			CASE WHEN i % 10 = 0 THEN now() - interval '1 hour' + i * interval '1 microsecond' END,
			CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END, 'issued'
		FROM generate_series(0, $1 - 1) i,
			LATERAL (SELECT string_agg(sha512(int8send(i::bigint * 100 + k)), ''::bytea) AS blob FROM generate_series(1, 18) k) r`, rows)
	b.Logf("wrote %d certificates at schema version 6 in %s", rows, d.Round(time.Millisecond))
	b.Logf("VACUUM ANALYZE in %s", exec("vacuum", `VACUUM ANALYZE certificates`).Round(time.Millisecond))
	var size string
	pool.QueryRow(ctx, `SELECT pg_size_pretty(pg_total_relation_size('certificates'))`).Scan(&size)
	b.Logf("certificates: %s with indexes and TOAST", size)

	now := time.Now()
	read := func(what, q string, args ...any) (int, time.Duration) {
		t0 := time.Now()
		r, err := pool.Query(ctx, q, args...)
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		n := 0
		for r.Next() {
			var serial string
			var revoked, expires time.Time
			var reason int32
			if err := r.Scan(&serial, &revoked, &reason, &expires); err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		if err := r.Err(); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return n, time.Since(t0)
	}
	plan := func(q string, args ...any) string {
		r, err := pool.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+q, args...)
		if err != nil {
			b.Fatal(err)
		}
		lines, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		return strings.Join(lines, "\n    ")
	}
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	timed := func(what, q string, args ...any) (int, []float64) {
		read(what, q, args...) // warm
		var out []float64
		n := 0
		for range 3 {
			var d time.Duration
			n, d = read(what, q, args...)
			out = append(out, msf(d))
		}
		return n, out
	}

	const oldQuery = `SELECT serial, revoked_at, reason, expires FROM certificates
		WHERE issuer = $1 AND revoked_at IS NOT NULL AND expires > $2 ORDER BY serial`
	nOld, before := timed("old list", oldQuery, "int", now)
	b.Logf("before 0007: %d entries read in %v ms; plan:\n    %s", nOld, before, plan(oldQuery, "int", now))

	t0 := time.Now()
	s, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	migrated := time.Since(t0)
	b.Logf("migration 0007 applied in %s", migrated.Round(time.Millisecond))
	exec("vacuum", `VACUUM ANALYZE certificates`)

	nNew, after := timed("shard list", listRevokedShardSQL, "int", 0, now)
	if nNew != nOld {
		b.Fatalf("shard 0 lists %d, before %d", nNew, nOld)
	}
	b.Logf("after 0007, one shard: %d entries read in %v ms; plan:\n    %s", nNew, after, plan(listRevokedShardSQL, "int", 0, now))

	b.Logf("revoked rows moved to 16 shards in %s", exec("shards",
		`UPDATE certificates SET crl_shard = ('x' || right(serial, 1))::bit(4)::int WHERE revoked_at IS NOT NULL`).Round(time.Millisecond))
	exec("vacuum", `VACUUM ANALYZE certificates`)
	var per []float64
	var line []string
	total := 0
	for k := range 16 {
		n, v := timed("shard list", listRevokedShardSQL, "int", k, now)
		total += n
		per = append(per, v...)
		line = append(line, fmt.Sprintf("%d:%d/%.1fms", k, n, med(v)))
	}
	if total != nOld {
		b.Fatalf("16 shards list %d, one %d", total, nOld)
	}
	b.Logf("16 shards, entries/median read: %s", strings.Join(line, " "))

	b.ReportMetric(float64(rows), "certificates")
	b.ReportMetric(float64(nOld), "revoked")
	b.ReportMetric(med(before), "list_0006_ms")
	b.ReportMetric(med(after), "list_covering_ms")
	b.ReportMetric(med(per), "list_shard16_ms")
	b.ReportMetric(msf(migrated), "migrate_0007_ms")
	b.ReportMetric(0, "ns/op")
}
