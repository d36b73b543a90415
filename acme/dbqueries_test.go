package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/mattn/go-sqlite3"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/postgres"
	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A newOrder's database work must not grow with its identifiers, counted at
// the database, not in store calls: the statements SQLite runs (through a
// counting driver) and those PostgreSQL executes (pg_stat_statements) for an
// order of 1, 10 and 100 identifiers are the same number, both when every
// authorization is new and when every one is reused.
func TestNewOrderQueriesDoNotGrowWithIdentifiers(t *testing.T) {
	for _, db := range []struct {
		name string
		open func(t *testing.T) (storage.Store, func() int64)
	}{
		{"sqlite", openCountingSQLite},
		{"postgres", openCountingPostgres},
	} {
		t.Run(db.name, func(t *testing.T) {
			type counts struct{ fresh, reused int64 }
			got := map[int]counts{}
			for _, n := range []int{1, 10, 100} {
				t.Run(fmt.Sprint(n), func(t *testing.T) {
					store, queries := db.open(t)
					ca, acct := envOn(t, store, store)
					ctx := context.Background()
					ids := make([]acme.Identifier, n)
					for i := range ids {
						ids[i] = acme.Identifier{Type: "dns", Value: fmt.Sprintf("n%d.example.com", i)}
					}
					before := queries()
					o, err := ca.NewOrder(ctx, acct, acme.NewOrderRequest{Identifiers: ids})
					if err != nil {
						t.Fatalf("%d identifiers: %v", n, err)
					}
					fresh := queries() - before
					for _, id := range o.AuthzIDs {
						a, err := ca.Authorization(ctx, acct, id)
						if err != nil {
							t.Fatal(err)
						}
						if ch, _, err := ca.RespondChallenge(ctx, acct, a.Challenges[0].ID); err != nil || ch.Status != acme.StatusValid {
							t.Fatalf("challenge: %v %v", ch, err)
						}
					}
					before = queries()
					again, err := ca.NewOrder(ctx, acct, acme.NewOrderRequest{Identifiers: ids})
					if err != nil {
						t.Fatal(err)
					}
					if again.Status != acme.StatusReady || len(again.AuthzIDs) != n {
						t.Fatalf("%d identifiers: the second order is %s with %d authorizations, want ready with %d", n, again.Status, len(again.AuthzIDs), n)
					}
					got[n] = counts{fresh, queries() - before}
				})
			}
			for _, n := range []int{10, 100} {
				if got[n] != got[1] {
					t.Errorf("statements of one newOrder (new, reused authorizations): %d identifiers %v, 1 identifier %v", n, got[n], got[1])
				}
			}
			t.Logf("statements of one newOrder: %d new, %d reused", got[100].fresh, got[100].reused)
		})
	}
}

// envOn is a CA on store with reuse and the store-reading rate limits on,
// and an account. front is the store the core itself sees (store, or a
// wrapper of it that counts); the ledger writes to store.
func envOn(t *testing.T, store, front storage.Store) (*acme.Core, *storage.Account) {
	t.Helper()
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	rules, _ := policy.New(policy.Config{AllowSpecialUse: []string{"example.com"}})
	profile := issuancetest.Profile(t, "tls", issuance.ProfileConfig{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{iss}, Profiles: []*issuance.Profile{profile},
		Ledger: ledger.Issuance{Store: store}, Policy: rules, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	val := &fakeValidator{results: map[string][]error{}}
	limit := acme.Limit{Count: 1000, Period: time.Hour}
	cfg := acme.Config{Policy: rules, InlineValidation: 5 * time.Second, RetryBackoff: 10 * time.Millisecond, Logger: quiet,
		MaxIdentifiers: 100, ReuseAuthorizations: true,
		RateLimits: acme.RateLimits{NewOrdersPerAccount: limit, FailedValidationsPerName: limit}}
	ca, err := acme.New(cfg, front, acme.LocalIssuer{Service: svc}, val)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Wait)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	acct, _, err := ca.NewAccount(context.Background(), &jose.JSONWebKey{Key: priv.Public()}, acme.NewAccountRequest{TermsOfServiceAgreed: true}, "127.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	return ca, acct
}

// sqliteStatements counts every statement run through the "sqlite3-counting"
// driver, which wraps mattn/go-sqlite3.
var sqliteStatements atomic.Int64

func init() { sql.Register("sqlite3-counting", countingDriver{&sqlite3.SQLiteDriver{}}) }

func openCountingSQLite(t *testing.T) (storage.Store, func() int64) {
	store, err := sqlite.OpenDriver("sqlite3-counting", t.TempDir()+"/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, sqliteStatements.Load
}

// openCountingPostgres counts the statements the server executed in the
// test's database, from pg_stat_statements (pgtest preloads it).
func openCountingPostgres(t *testing.T) (storage.Store, func() int64) {
	dsn := pgtest.Start(t)
	store, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		t.Fatalf("pg_stat_statements (pgtest preloads it when PostgreSQL's lib directory has it): %v", err)
	}
	return store, func() int64 {
		var n int64
		err := conn.QueryRow(context.Background(), `SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

type countingDriver struct{ inner driver.Driver }

func (d countingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return countingConn{c.(*sqlite3.SQLiteConn)}, nil
}

// countingConn counts each statement executed; it offers database/sql the
// same fast paths (ExecerContext, QueryerContext) as the driver it wraps.
type countingConn struct{ *sqlite3.SQLiteConn }

func (c countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	sqliteStatements.Add(1)
	return c.SQLiteConn.ExecContext(ctx, query, args)
}

func (c countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	sqliteStatements.Add(1)
	return c.SQLiteConn.QueryContext(ctx, query, args)
}

func (c countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.SQLiteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return countingStmt{s.(*sqlite3.SQLiteStmt)}, nil
}

func (c countingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

type countingStmt struct{ *sqlite3.SQLiteStmt }

func (s countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	sqliteStatements.Add(1)
	return s.SQLiteStmt.ExecContext(ctx, args)
}

func (s countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	sqliteStatements.Add(1)
	return s.SQLiteStmt.QueryContext(ctx, args)
}
