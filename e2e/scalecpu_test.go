package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
)

var scaleProfileDir = flag.String("scale-profile", "", "BenchmarkScaleOutCPU: write a 5 s CPU profile of every Anvil process of each deployment into this directory")

// BenchmarkScaleOutCPU is `make bench-scale`: the four deployments of
// BenchmarkScaleOut (serve on SQLite, serve on PostgreSQL, one or two front
// ends before an `anvil signer` on PostgreSQL) at concurrency 16, charging
// each for all the CPU it costs. anvil_cpu_ms/cert sums the Anvil processes;
// pg_cpu_ms/cert is the PostgreSQL cluster's (postmaster, backends and
// helpers, from /proc), which SQLite, running inside `anvil serve`, already
// pays in anvil_cpu_ms/cert; total_cpu_ms/cert is both. The ratios against
// the SQLite run of the same invocation are logged at the end, and on
// PostgreSQL the statements per certificate (pg_stat_statements, when the
// installation has it) with the most frequent ones.
func BenchmarkScaleOutCPU(b *testing.B) {
	legolog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	const conc = 16
	limitless := func(cfg *lego.Config) { cfg.Certificate.OverallRequestLimit = 1000 }
	type row struct {
		name              string
		anvil, pg, certsS float64
		stmts             float64
	}
	var rows []row
	run := func(b *testing.B, name, label, dsn string, clients []*lego.Client, admins []int, pids ...int) {
		var st *stmtCounter
		if dsn != "" {
			st = newStmtCounter(b, dsn)
		}
		if *scaleProfileDir != "" {
			for i, port := range admins {
				go func() {
					time.Sleep(time.Second) // past the warm-up
					profileTo(b, port, 5, filepath.Join(*scaleProfileDir, fmt.Sprintf("%s-%d.prof", strings.ReplaceAll(name, "/", "_"), i)))
				}()
			}
		}
		pgBefore := pgCPU(b)
		r := runFlows(b, clients, label, true, pids...)
		pgUsed := pgCPU(b) - pgBefore
		r.report(b)
		perCert := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(r.flows) }
		rw := row{name: name, anvil: r.serverCPUPerCert(), pg: perCert(pgUsed), certsS: r.certsPerSec()}
		b.ReportMetric(rw.anvil, "anvil_cpu_ms/cert")
		b.ReportMetric(rw.pg, "pg_cpu_ms/cert")
		b.ReportMetric(rw.anvil+rw.pg, "total_cpu_ms/cert")
		if st != nil {
			// The flows' warm-up issued one certificate per client too.
			rw.stmts = st.report(b, r.flows+len(clients))
			b.ReportMetric(rw.stmts, "stmts/cert")
		}
		rows = append(rows, rw)
	}
	single := func(b *testing.B, name, label, dsn string, opts ...CAOption) {
		ca := NewCA(b, opts...)
		clients := make([]*lego.Client, conc)
		for i := range clients {
			c, u := legoClient(b, ca, newKey(b), limitless)
			register(b, c, u)
			clients[i] = c
		}
		run(b, name, label, dsn, clients, []int{ca.AdminPort}, ca.Pid())
	}
	b.Run("sqlite/serve", func(b *testing.B) { single(b, "sqlite/serve", "sqlite", "") })
	b.Run("postgres/serve", func(b *testing.B) {
		dsn := pgtest.Start(b)
		single(b, "postgres/serve", "postgres", dsn, WithDatabase("driver: postgres\ndsn: "+strconv.Quote(dsn)))
	})
	for _, fronts := range []int{1, 2} {
		name := fmt.Sprintf("postgres/signer+%dfronts", fronts)
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, fronts)
			clients := make([]*lego.Client, conc)
			for i := range clients {
				clients[i] = c.legoSpread(b)
			}
			pids := []int{c.signer.cmd.Process.Pid}
			admins := []int{c.signerAdmin}
			for i, f := range c.fronts {
				pids = append(pids, f.cmd.Process.Pid)
				admins = append(admins, c.frontAdmin[i])
			}
			// Flow names are DNS labels: no '+' or '/'.
			run(b, name, fmt.Sprintf("fronts%d", fronts), c.dsn, clients, admins, pids...)
		})
	}
	if len(rows) > 0 && rows[0].name == "sqlite/serve" {
		base := rows[0]
		var sb strings.Builder
		fmt.Fprintf(&sb, "\n%-26s %9s %10s %8s %10s %12s %14s %10s\n", "deployment", "certs/s", "anvil ms", "pg ms", "total ms", "anvil/sqlite", "total/sqlite", "stmts/cert")
		for _, r := range rows {
			fmt.Fprintf(&sb, "%-26s %9.1f %10.2f %8.2f %10.2f %12.2f %14.2f %10.1f\n", r.name, r.certsS, r.anvil, r.pg, r.anvil+r.pg,
				r.anvil/base.anvil, (r.anvil+r.pg)/(base.anvil+base.pg), r.stmts)
		}
		fmt.Print(sb.String())
	}
}

// pgCPU is the test binary's PostgreSQL cluster's CPU so far.
func pgCPU(b testing.TB) time.Duration {
	d, err := pgtest.ServerCPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// stmtCounter reads pg_stat_statements for one database: the statements its
// clients ran between newStmtCounter and report.
type stmtCounter struct {
	conn *pgx.Conn
	ok   bool
}

func newStmtCounter(b testing.TB, dsn string) *stmtCounter {
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	s := &stmtCounter{conn: conn}
	if _, err := conn.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		b.Logf("no statement counts: %v", err)
		return s
	}
	if _, err := conn.Exec(context.Background(), `SELECT pg_stat_statements_reset()`); err != nil {
		b.Logf("no statement counts: %v", err)
		return s
	}
	s.ok = true
	return s
}

// report logs the statements per certificate, the most frequent first, and
// returns their sum per certificate.
func (s *stmtCounter) report(b testing.TB, certs int) float64 {
	if !s.ok {
		return 0
	}
	rows, err := s.conn.Query(context.Background(), `SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC`)
	if err != nil {
		b.Logf("statement counts: %v", err)
		return 0
	}
	defer rows.Close()
	var total int64
	var sb strings.Builder
	for rows.Next() {
		var calls int64
		var q string
		if err := rows.Scan(&calls, &q); err != nil {
			b.Logf("statement counts: %v", err)
			return 0
		}
		total += calls
		if calls*10 >= int64(certs) { // 0.1 per certificate or more
			fmt.Fprintf(&sb, "%7.2f  %s\n", float64(calls)/float64(certs), q)
		}
	}
	// Printed, not logged: a benchmark's log is cut at ten lines.
	fmt.Printf("%s: statements per certificate: %.1f\n%s", b.Name(), float64(total)/float64(certs), sb.String())
	return float64(total) / float64(certs)
}
