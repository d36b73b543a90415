package postgres

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
	"github.com/anvil-pki/anvil/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openFresh opens a store on a new database of the test cluster.
func openFresh(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openFresh(t) })
}

// TestDeleteExpiredInBatches runs the cleanup check with batches of two rows,
// so that every batch loop goes round several times.
func TestDeleteExpiredInBatches(t *testing.T) {
	s := openFresh(t)
	defer s.Close()
	s.deleteBatch = 2
	storagetest.CheckDeleteExpired(t, s)
}

func schemaVersion(t *testing.T, s *Store) (version, rows int) {
	t.Helper()
	err := s.pool.QueryRow(t.Context(), `SELECT COALESCE(MAX(version), 0), COUNT(*) FROM schema_migrations`).Scan(&version, &rows)
	if err != nil {
		t.Fatal(err)
	}
	return version, rows
}

// TestReopen: opening an up-to-date database applies nothing and keeps the
// data.
func TestReopen(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.Start(t)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2031, time.March, 14, 0, 0, 0, 0, time.UTC)
	if err := s.RedeemNonce(t.Context(), "kept", expires); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, n := schemaVersion(t, s); v != len(ms) || n != len(ms) {
		t.Fatalf("reopened database at version %d with %d migration rows, want %d", v, n, len(ms))
	}
	if err := s.RedeemNonce(t.Context(), "kept", expires); err == nil {
		t.Fatal("the nonce redeemed before reopening was forgotten")
	}
}

// TestConcurrentOpen: nodes starting together on an empty database agree on
// one schema; the advisory lock makes all but one wait and find it done.
func TestConcurrentOpen(t *testing.T) {
	dsn := pgtest.Start(t)
	stores := make([]*Store, 6)
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	ms, _ := loadMigrations()
	if v, n := schemaVersion(t, stores[0]); v != len(ms) || n != len(ms) {
		t.Fatalf("schema version %d with %d migration rows, want %d", v, n, len(ms))
	}
	var locks int
	if err := stores[0].pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'`).Scan(&locks); err != nil || locks != 0 {
		t.Fatalf("%d advisory locks remain after migrating (%v)", locks, err)
	}
}
