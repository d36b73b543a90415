package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/anvil-pki/anvil/metrics"
	"github.com/anvil-pki/anvil/storage"
)

// The CRL publisher finds operators' CRL requests by asking its store for
// storage.Admin: the metrics decorator must not hide it.
func TestInstrumentedStoreKeepsAdmin(t *testing.T) {
	ctx := context.Background()
	s, err := openStore(ctx, databaseConfig{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "a.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(storage.Admin); !ok {
		t.Fatalf("the SQLite store %T is no storage.Admin", s)
	}
	if _, ok := instrumentStore(s, metrics.New()).(storage.Admin); !ok {
		t.Fatal("the instrumented store hides storage.Admin: operators' CRL requests would be ignored")
	}
}
