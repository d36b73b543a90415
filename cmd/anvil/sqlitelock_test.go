package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A second server on one SQLite database is refused with the reason; the
// lock is free again once the first lets go.
func TestSecondServerOnOneSQLiteDatabaseRefused(t *testing.T) {
	db := filepath.Join(t.TempDir(), "anvil.db")
	release, err := lockSQLiteServe(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockSQLiteServe(db); err == nil || !strings.Contains(err.Error(), "another anvil serve") {
		t.Fatalf("second lock: %v, want a refusal naming another anvil serve", err)
	}
	release()
	again, err := lockSQLiteServe(db)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
