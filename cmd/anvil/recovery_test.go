package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// A server starting on SQLite owns what its dead predecessor left: open
// intents are abandoned (and so revoked), and an order that was processing
// under a lease is claimable at once instead of after the lease.
func TestRecoverAloneResumesAtOnce(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	acct := &storage.Account{KeyID: "k", Status: "valid", CreatedAt: now}
	if err := store.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	o := &storage.Order{AccountID: acct.ID, Status: "processing", Profile: "tls", Expires: now.Add(time.Hour),
		CSR: []byte("csr"), LeaseUntil: now.Add(time.Minute)}
	if err := store.CreateOrder(ctx, o, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.ReserveSerial(ctx, &storage.Certificate{Serial: "01", Issuer: "ecdsa", OrderID: o.ID,
		LintDER: []byte("lint"), CreatedAt: now, Expires: now.Add(time.Hour), Holder: "old"}); err != nil {
		t.Fatal(err)
	}
	c := &core{cfg: &caConfig{Database: databaseConfig{Driver: "sqlite"}}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), store: store}
	if err := c.recoverAlone(ctx); err != nil {
		t.Fatal(err)
	}
	claimed, err := store.ClaimOrders(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != o.ID {
		t.Fatalf("ClaimOrders right after the restart = %d orders, %v; want the interrupted one", len(claimed), err)
	}
	cert, err := store.GetCertificate(ctx, "01")
	if err != nil || cert.Outcome != storage.OutcomeAbandoned || cert.Reason != storage.ReasonCessationOfOperation || cert.RevokedAt.IsZero() {
		t.Fatalf("open intent after the restart: %+v, %v; want abandoned and revoked", cert, err)
	}

	// The metric counts it.
	reg := prometheus.NewRegistry()
	reg.MustRegister(newLedgerCollector(store))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].Metric) != 1 {
		t.Fatalf("gathered %v, %v; want one anvil_ledger_rows series", mfs, err)
	}
	m := mfs[0].Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if mfs[0].GetName() != "anvil_ledger_rows" || labels["issuer"] != "ecdsa" || labels["outcome"] != "abandoned" || m.GetGauge().GetValue() != 1 {
		t.Fatalf("metric %s %v = %v; want anvil_ledger_rows{issuer=ecdsa,outcome=abandoned} 1", mfs[0].GetName(), labels, m.GetGauge().GetValue())
	}
}

// A node sharing its database (PostgreSQL) that restarts under the same
// node_id takes back at once the orders it was finalizing and abandons its
// own open intents; another node's work and intents are left alone. (The
// store here is SQLite: the storage behaviour is the same on both, as the
// conformance suite checks.)
func TestRecoverNodeTakesItsOwnWorkBack(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	acct := &storage.Account{KeyID: "k", Status: "valid", CreatedAt: now}
	if err := store.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"node-1", "node-2"} {
		store.SetLeaseHolder(node)
		o := &storage.Order{ID: "order-" + node, AccountID: acct.ID, Status: "pending", Profile: "tls", Expires: now.Add(time.Hour)}
		if err := store.CreateOrder(ctx, o, nil); err != nil {
			t.Fatal(err)
		}
		o.Status, o.CSR, o.LeaseUntil = "processing", []byte("csr"), now.Add(time.Minute)
		if err := store.UpdateOrder(ctx, o, "pending"); err != nil {
			t.Fatal(err)
		}
		if err := store.ReserveSerial(ctx, &storage.Certificate{Serial: "0" + node[5:], Issuer: "ecdsa", OrderID: o.ID,
			LintDER: []byte("lint"), CreatedAt: now, Expires: now.Add(time.Hour), Holder: node}); err != nil {
			t.Fatal(err)
		}
	}
	c := &core{cfg: &caConfig{Database: databaseConfig{Driver: "postgres"}, NodeID: "node-1"},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), store: store}
	store.SetLeaseHolder(c.cfg.nodeID())
	if err := c.recoverNode(ctx, true); err != nil {
		t.Fatal(err)
	}
	claimed, err := store.ClaimOrders(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != "order-node-1" {
		t.Fatalf("ClaimOrders after node-1 restarted = %d orders, %v; want only node-1's own", len(claimed), err)
	}
	open, err := store.OpenIntents(ctx, nodeLeasePrefix, time.Now())
	if err != nil || len(open) != 1 || open[0].Holder != "node-2" {
		t.Fatalf("open intents after node-1 restarted: %+v, %v; want only node-2's", open, err)
	}
}

// On PostgreSQL a live node's ledger sweep abandons the open intents of a
// node whose lease ran out (it died), and leaves a live node's alone.
func TestLedgerSweepAbandonsDeadNodesIntents(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	// Both leases were taken a minute ago and ran out; the live node renews
	// its own as its sweep begins.
	for _, node := range []string{"dead", "live"} {
		if _, err := store.TryLease(ctx, nodeLeasePrefix+node, node, now.Add(-time.Minute), nodeLeaseTTL); err != nil {
			t.Fatal(err)
		}
		if err := store.ReserveSerial(ctx, &storage.Certificate{Serial: map[string]string{"dead": "0d", "live": "0e"}[node], Issuer: "ecdsa", OrderID: "o-" + node,
			LintDER: []byte("lint"), CreatedAt: now, Expires: now.Add(time.Hour), Holder: node}); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	live := &core{cfg: &caConfig{Database: databaseConfig{Driver: "postgres"}, NodeID: "live"}, log: quiet, store: store}
	live.ledgerTick(ctx, now)
	open, err := store.OpenIntents(ctx, nodeLeasePrefix, now)
	if err != nil || len(open) != 1 || open[0].Holder != "live" {
		t.Fatalf("open intents after the sweep: %+v, %v; want only the live node's", open, err)
	}
	dead, err := store.GetCertificate(ctx, "0d")
	if err != nil || dead.Outcome != storage.OutcomeAbandoned || dead.Reason != storage.ReasonCessationOfOperation {
		t.Fatalf("the dead node's intent: %+v, %v; want abandoned, revoked", dead, err)
	}
}
