package sqlite

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/storagetest"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "anvil.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openTemp(t) })
}

// TestDeleteExpiredInBatches runs the cleanup check with batches of two rows,
// so that every batch loop goes round several times.
func TestDeleteExpiredInBatches(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	s.deleteBatch = 2
	storagetest.CheckDeleteExpired(t, s)
}

func schemaVersion(t *testing.T, s *Store) (version, rows int) {
	t.Helper()
	err := s.r.QueryRow(`SELECT COALESCE(MAX(version), 0), COUNT(*) FROM schema_migrations`).Scan(&version, &rows)
	if err != nil {
		t.Fatal(err)
	}
	return version, rows
}

// TestReopen: opening an up-to-date database applies nothing and keeps the
// data; the settings that make concurrent use safe are in force.
func TestReopen(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "anvil.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, n := schemaVersion(t, s); v != len(ms) || n != len(ms) {
		t.Fatalf("fresh database at version %d with %d migration rows, want %d", v, n, len(ms))
	}
	ctx := context.Background()
	if err := s.RedeemNonce(ctx, "kept", storagetestTime); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, n := schemaVersion(t, s); v != len(ms) || n != len(ms) {
		t.Fatalf("reopened database at version %d with %d migration rows, want %d", v, n, len(ms))
	}
	if err := s.RedeemNonce(ctx, "kept", storagetestTime); err == nil {
		t.Fatal("the nonce redeemed before reopening was forgotten")
	}

	for pragma, want := range map[string]string{
		"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "busy_timeout": "10000",
	} {
		var got string
		if err := s.w.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	var readOnly string
	if err := s.r.QueryRow("PRAGMA query_only").Scan(&readOnly); err != nil || readOnly != "1" {
		t.Errorf("reader PRAGMA query_only = %s (%v), want 1", readOnly, err)
	}
}

// TestConcurrentOpen: several processes' worth of Opens of one new file agree
// on one schema.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anvil.db")
	var wg sync.WaitGroup
	stores := make([]*Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(path) })
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
}

func TestOpenRefusesNonPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := Open(p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

var storagetestTime = time.Date(2031, time.March, 14, 0, 0, 0, 0, time.UTC)

// BenchmarkIssuanceFlow: the storage work of one certificate, 16 at a time.
func BenchmarkIssuanceFlow(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "anvil.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storagetest.BenchmarkIssuanceFlow(b, s)
}

// The writer keeps statement journals in memory: without it SQLite created
// and unlinked a temporary file in /var/tmp for about every third issuance
// (strace of BenchmarkIssuanceFlow: 293 per 1,000 flows, none with it).
func TestWriterTempStoreInMemory(t *testing.T) {
	s := openTemp(t)
	var mode int
	if err := s.w.QueryRowContext(t.Context(), `PRAGMA temp_store`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Fatalf("writer's temp_store = %d, want 2 (MEMORY)", mode)
	}
}
