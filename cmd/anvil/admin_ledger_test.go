package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// ledgerConfig writes the dev serve configuration pointed at a new SQLite
// database and returns its path and the database's.
func ledgerConfig(t *testing.T) (cfgPath, dbPath string) {
	t.Helper()
	dev, err := os.ReadFile("../../configs/dev/serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "anvil.db")
	cfg := strings.Replace(string(dev), "dsn: var/dev/anvil.db", "dsn: "+dbPath, 1)
	if cfg == string(dev) {
		t.Fatal("configs/dev/serve.yaml no longer names var/dev/anvil.db")
	}
	cfgPath = filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dbPath
}

// `anvil admin ledger check` counts rows per issuer and outcome, and fails,
// naming them, on rows without an outcome that no running server works on.
func TestAdminLedgerCheck(t *testing.T) {
	cfgPath, dbPath := ledgerConfig(t)
	ctx := context.Background()
	store, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, serial := range []string{"0a01", "0a02", "0b01"} {
		issuer := "ecdsa"
		if serial == "0b01" {
			issuer = "rsa"
		}
		if err := store.ReserveSerial(ctx, &storage.Certificate{Serial: serial, Issuer: issuer, OrderID: "o-" + serial,
			LintDER: []byte("lint"), CreatedAt: now, Expires: now.Add(time.Hour), Holder: "node-1"}); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.RecordIssuedCertificate(ctx, "0a01", []byte("cert")))
	must(store.RecordNotSigned(ctx, "0b01", storage.NotSignedHSMError))
	store.Close()

	check := func() (string, error) {
		var out bytes.Buffer
		err := admin([]string{"ledger", "check", "--config", cfgPath}, &out)
		return out.String(), err
	}
	out, err := check()
	if err == nil || !strings.Contains(out, "0a02") || !strings.Contains(err.Error(), "1 ledger rows") {
		t.Fatalf("an open intent with no server running: err %v, output\n%s\nwant a failure listing 0a02", err, out)
	}
	for _, want := range []string{"issued 1", "not_signed 1", "open 1", "hsm_error"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}

	// While a server holds the database, its open rows are in flight.
	unlock, err := lockSQLiteServe(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err = check()
	unlock()
	if err != nil || !strings.Contains(out, "in flight: 1") {
		t.Fatalf("with a server running: %v\n%s", err, out)
	}

	// What a starting server does: the open intent is abandoned, and the
	// ledger is clean.
	store, err = sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.AbandonIntents(ctx, "", now)
	store.Close()
	must(err)
	out, err = check()
	if err != nil || !strings.Contains(out, "abandoned 1") || !strings.Contains(out, "open 0") {
		t.Fatalf("after the intent was abandoned: %v\n%s", err, out)
	}
}
