package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
)

// healthServer stands in for the running server's admin listener.
func healthServer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestAdminStatus(t *testing.T) {
	e := newAdminEnv(t, healthServer(t, http.StatusOK, "ok\n"))
	e.account(t, "acct-a")
	c := e.issue(t, "acct-a", "a.example.com")
	e.issue(t, "acct-a", "b.example.com")
	if err := e.store.RevokeCertificate(t.Context(), hexSerial(c), time.Now(), 1); err != nil {
		t.Fatal(err)
	}

	var rep statusReport
	e.runJSON(t, &rep, "status")
	if len(rep.Issuers) != 1 {
		t.Fatalf("status: %d issuers, want 1", len(rep.Issuers))
	}
	is := rep.Issuers[0]
	if is.Name != e.iss.Name() || !is.Certificate.NotAfter.Equal(e.iss.Certificate().NotAfter) || is.Certificate.Error != "" {
		t.Fatalf("status issuer %+v, want %s expiring %s", is, e.iss.Name(), e.iss.Certificate().NotAfter)
	}
	if is.CRL == nil || is.CRL.Published {
		t.Fatalf("status CRL %+v, want none published", is.CRL)
	}
	if rep.HSM.State != "ok" {
		t.Fatalf("status hsm %+v, want ok", rep.HSM)
	}
	want := storage.Counts{Accounts: map[string]int{"valid": 1}, Orders: map[string]int{"valid": 2},
		Certificates: map[string]int{"valid": 1, "revoked": 1}}
	if fmt.Sprint(*rep.Counts) != fmt.Sprint(want) {
		t.Fatalf("status counts %v, want %v", *rep.Counts, want)
	}
	out := e.mustRun(t, "status")
	for _, w := range []string{e.iss.Name(), "Anvil Test Issuer", "none published yet", "hsm: ok", "certificates  valid 1, revoked 1"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}

	// A token the server cannot sign with: /health answers 503 with why.
	down := healthServer(t, http.StatusServiceUnavailable, "hsm: token anvil: CKR_DEVICE_ERROR\n")
	e.runJSON(t, &rep, "status", "--health-url", "http://"+down+"/health")
	if rep.HSM.State != "down" || !strings.Contains(rep.HSM.Detail, "CKR_DEVICE_ERROR") {
		t.Fatalf("status with the HSM down: %+v", rep.HSM)
	}
	// No server at all.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	e.runJSON(t, &rep, "status", "--health-url", "http://"+closed+"/health")
	if rep.HSM.State != "unreachable" {
		t.Fatalf("status with no server: %+v", rep.HSM)
	}
}

func TestAdminCRLRegenerate(t *testing.T) {
	e := newAdminEnv(t, "")
	ctx := t.Context()
	// A CRL published an hour ago.
	published := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	if err := e.store.PutCRL(ctx, &storage.CRL{Issuer: e.iss.Name(), Number: 7, ThisUpdate: published,
		NextUpdate: published.Add(7 * 24 * time.Hour), DER: []byte("crl")}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	out := e.mustRun(t, "crl", "regenerate")
	if !strings.Contains(out, "requested a new CRL of "+e.iss.Name()) {
		t.Fatalf("crl regenerate said:\n%s", out)
	}
	// The request is in the database, where the publisher looks
	// (revocation.TestCRLRequest shows it serving one).
	req, err := e.store.CRLRequested(ctx, e.iss.Name())
	if err != nil || req.Before(before.Add(-time.Second)) {
		t.Fatalf("CRLRequested after crl regenerate: %v, %v", req, err)
	}
	var rep statusReport
	e.runJSON(t, &rep, "status")
	if c := rep.Issuers[0].CRL; !c.Published || c.Number != 7 || c.Requested.IsZero() {
		t.Fatalf("status after the request: CRL %+v, want number 7 with a pending request", c)
	}
	if !strings.Contains(e.mustRun(t, "status"), "regeneration requested") {
		t.Fatal("status does not show the pending request")
	}
	// The publisher's new CRL serves the request: status stops showing it.
	if err := e.store.PutCRL(ctx, &storage.CRL{Issuer: e.iss.Name(), Number: 8, ThisUpdate: time.Now().UTC().Add(time.Second).Truncate(time.Second),
		NextUpdate: time.Now().Add(7 * 24 * time.Hour), DER: []byte("crl")}); err != nil {
		t.Fatal(err)
	}
	e.runJSON(t, &rep, "status")
	if c := rep.Issuers[0].CRL; c.Number != 8 || !c.Requested.IsZero() {
		t.Fatalf("status after the new CRL: %+v, want number 8 and no pending request", c)
	}
	// An issuer nobody publishes is refused, not silently queued.
	if _, err := e.run(t, "crl", "regenerate", "--issuer", "int-typo"); err == nil || !strings.Contains(err.Error(), "int-typo") {
		t.Fatalf("crl regenerate --issuer int-typo: %v", err)
	}
}

// With crl_shards > 1, status shows the shard an operator must watch (the
// first to reach nextUpdate), and a regeneration request stays pending until
// every shard has a CRL made since.
func TestAdminCRLStatusShards(t *testing.T) {
	e := newAdminEnv(t, "")
	ctx := t.Context()
	published := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	put := func(shard int, number int64, this, next time.Time) {
		t.Helper()
		if err := e.store.PutCRL(ctx, &storage.CRL{Issuer: e.iss.Name(), Shard: shard, Number: number, ThisUpdate: this,
			NextUpdate: next, DER: []byte("crl")}); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 10, published, published.Add(7*24*time.Hour))
	put(3, 11, published, published.Add(2*24*time.Hour)) // the stale one
	var rep statusReport
	e.runJSON(t, &rep, "status")
	if c := rep.Issuers[0].CRL; !c.Published || c.Shards != 2 || c.Shard != 3 || c.Number != 11 {
		t.Fatalf("status of two shards: %+v, want shard 3 (number 11) of 2", c)
	}
	if out := e.mustRun(t, "status"); !strings.Contains(out, "2 shards; the first to reach nextUpdate is shard 3") {
		t.Fatalf("status does not name the stale shard:\n%s", out)
	}
	e.mustRun(t, "crl", "regenerate")
	later := time.Now().UTC().Add(time.Second).Truncate(time.Second)
	put(0, 12, later, later.Add(7*24*time.Hour))
	e.runJSON(t, &rep, "status")
	if c := rep.Issuers[0].CRL; c.Requested.IsZero() {
		t.Fatalf("status with shard 3 not yet regenerated: %+v, want the request pending", c)
	}
	put(3, 13, later, later.Add(7*24*time.Hour))
	e.runJSON(t, &rep, "status")
	if c := rep.Issuers[0].CRL; !c.Requested.IsZero() {
		t.Fatalf("status with every shard regenerated: %+v, want no pending request", c)
	}
}

// The backup procedure of docs/backup.md: a copy while the server writes,
// the database lost, the copy restored, and issuance going on with every
// serial of before still held by the ledger's unique constraint.
func TestAdminBackupRestore(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a")
	var before []string
	for i := range 3 {
		before = append(before, hexSerial(e.issue(t, "acct-a", fmt.Sprintf("n%d.example.com", i))))
	}
	backup := filepath.Join(t.TempDir(), "anvil-backup.db")
	out := e.mustRun(t, "backup", "--out", backup)
	if !strings.Contains(out, "3 ledger entries, 1 accounts") {
		t.Fatalf("backup said:\n%s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if _, err := e.run(t, "backup", "--out", backup); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	// Issued after the backup: lost with the database. docs/backup.md says
	// what that means and how to narrow the window.
	lost := hexSerial(e.issue(t, "acct-a", "late.example.com"))

	// The disk is lost: the database and its WAL go.
	e.store.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(e.dbPath + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	// Restore: copy the backup into place, start again.
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.dbPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.openStore(t)

	var rows []certRow
	e.runJSON(t, &rows, "cert", "list", "--limit", "0")
	sameList(t, "certificates after restore", rowSerials(rows), before)
	if _, err := e.store.GetCertificate(t.Context(), lost); err == nil {
		t.Fatal("a certificate issued after the backup is in the restored database")
	}
	var after []string
	for i := range 3 {
		after = append(after, hexSerial(e.issue(t, "acct-a", fmt.Sprintf("m%d.example.com", i))))
	}
	e.runJSON(t, &rows, "cert", "list", "--limit", "0")
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Serial] {
			t.Fatalf("serial %s twice in the ledger", r.Serial)
		}
		seen[r.Serial] = true
	}
	for _, s := range append(append([]string{}, before...), after...) {
		if !seen[s] {
			t.Fatalf("serial %s missing after restore and new issuance", s)
		}
	}
	if len(rows) != 6 {
		t.Fatalf("%d ledger entries after restore and 3 issuances, want 6", len(rows))
	}
	// The ledger still refuses every serial it held before the loss.
	for _, s := range before {
		err := e.store.ReserveSerial(t.Context(), &storage.Certificate{Serial: s, Issuer: e.iss.Name(), CreatedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
		if err == nil {
			t.Fatalf("serial %s from before the backup could be reserved again after restore", s)
		}
	}
}

// status and the other commands read a signer's configuration too: on a
// split deployment the issuers and the HSM are there.
func TestAdminStatusWithSignerConfig(t *testing.T) {
	e := newAdminEnv(t, "")
	b, err := os.ReadFile("../../configs/production/signer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "  driver: postgres\n", "  driver: sqlite\n", 1)
	cfg = strings.Replace(cfg, "  dsn_env: ANVIL_DATABASE_DSN\n", "  dsn: "+e.dbPath+"\n", 1)
	cfg = strings.Replace(cfg, "admin_listen: 127.0.0.1:9090", "admin_listen: "+healthServer(t, http.StatusOK, "ok\n"), 1)
	e.cfgPath = filepath.Join(e.dir, "signer.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var rep statusReport
	e.runJSON(t, &rep, "status")
	if len(rep.Issuers) != 1 || rep.Issuers[0].Name != "example-int-ecdsa-2027" || rep.HSM.State != "ok" {
		t.Fatalf("status with the signer's configuration: %+v", rep)
	}
	// Its certificate file is not on this machine: said, not fatal.
	if !strings.Contains(rep.Issuers[0].Certificate.Error, "no such file") {
		t.Fatalf("status of a missing issuer certificate: %+v", rep.Issuers[0].Certificate)
	}
	if out := e.mustRun(t, "status"); !strings.Contains(out, "ERROR: ") {
		t.Fatalf("status table does not show the missing certificate:\n%s", out)
	}
}

// The whole design of crl regenerate: the command records a request, a
// running publisher (as in anvil serve) finds it at its next check and signs
// a new CRL in the HSM, and --wait returns once that CRL is stored. Nothing
// was revoked in between, so without the request no CRL would be made.
func TestAdminCRLRegenerateServedByPublisher(t *testing.T) {
	e := newAdminEnv(t, "")
	ocspSigner, err := e.iss.NewOCSPSigner(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := revocation.New(t.Context(), revocation.Config{CRLCheckInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, e.store, []*issuance.OCSPSigner{ocspSigner}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub.RefreshNow(t.Context()) // the CRL at start
	first, err := e.store.GetCRLShard(t.Context(), e.iss.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(ctx) }()
	defer func() { cancel(); <-done }()

	out := e.mustRun(t, "crl", "regenerate", "--wait", "2m")
	if !strings.Contains(out, "new CRLs of "+e.iss.Name()+" are stored") {
		t.Fatalf("crl regenerate --wait said:\n%s", out)
	}
	second, err := e.store.GetCRLShard(t.Context(), e.iss.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.Number <= first.Number {
		t.Fatalf("CRL number %d after the request, want above %d", second.Number, first.Number)
	}
	crl, err := x509.ParseRevocationList(second.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(e.iss.Certificate()); err != nil {
		t.Fatalf("the new CRL is not signed by the issuer: %v", err)
	}
}

// With no publisher running, --wait fails and says why.
func TestAdminCRLRegenerateWaitTimesOut(t *testing.T) {
	e := newAdminEnv(t, "")
	if err := e.store.PutCRL(t.Context(), &storage.CRL{Issuer: e.iss.Name(), Number: 1, ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(time.Hour), DER: []byte("crl")}); err != nil {
		t.Fatal(err)
	}
	_, err := e.run(t, "crl", "regenerate", "--wait", "1s")
	if err == nil || !strings.Contains(err.Error(), "is the process that publishes it running") {
		t.Fatalf("crl regenerate --wait with no publisher: %v", err)
	}
}
