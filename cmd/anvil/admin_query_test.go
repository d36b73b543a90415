package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// adminEnv is a CA's records on a real SQLite database, made by the real
// issuance service signing with a SoftHSM2 key, and a serve configuration
// that names them, for the admin commands to run against.
type adminEnv struct {
	dir     string
	cfgPath string
	dbPath  string
	store   *sqlite.Store
	iss     *issuance.Issuer
	svc     *issuance.Service
	leafKey *ecdsa.PrivateKey
	orders  int
}

func newAdminEnv(t *testing.T, adminListen string) *adminEnv {
	t.Helper()
	e := &adminEnv{dir: t.TempDir()}
	tok := issuancetest.Token(t)
	e.iss = issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	issuerPEM := filepath.Join(e.dir, "issuer.pem")
	if err := os.WriteFile(issuerPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.iss.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.dbPath = filepath.Join(e.dir, "anvil.db")
	e.openStore(t)
	e.leafKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
base_url: https://acme.example.com
admin_listen: %q
tls: {cert: %[2]s/tls.pem, key: %[2]s/tls.key}
database: {driver: sqlite, dsn: %[3]s}
hsm:
  module: /usr/lib/softhsm/libsofthsm2.so
  pin: {file: %[2]s/pin}
issuers:
  - name: %[4]s
    certificate: %[5]s
    key: "pkcs11:token=anvil;object=issuer;id=%%01"
    crl_url: http://ca.example/int.crl
profiles:
  tls: {validity: 90d}
validation: {caa_identities: [ca.example.com]}
`, adminListen, e.dir, e.dbPath, e.iss.Name(), issuerPEM)
	e.cfgPath = filepath.Join(e.dir, "serve.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// openStore opens the database and an issuance service recording into it.
func (e *adminEnv) openStore(t *testing.T) {
	t.Helper()
	store, err := sqlite.Open(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	t.Cleanup(func() { store.Close() })
	e.svc, err = issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{e.iss},
		Profiles: []*issuance.Profile{issuancetest.Profile(t, "tls", issuance.ProfileConfig{})},
		Ledger:   ledger.Issuance{Store: store}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *adminEnv) account(t *testing.T, id string, contact ...string) {
	t.Helper()
	err := e.store.CreateAccount(t.Context(), &storage.Account{ID: id, KeyID: "key-" + id, Key: []byte(`{}`), Contact: contact,
		Status: acme.StatusValid, TermsAgreed: true, CreatedIP: "192.0.2.1", CreatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
}

// issue makes an order of account for names and issues its certificate, as
// finalize does: the order's ID is the ledger entry's requester.
func (e *adminEnv) issue(t *testing.T, account string, names ...string) *x509.Certificate {
	t.Helper()
	e.orders++
	o := &storage.Order{ID: fmt.Sprintf("order-%d", e.orders), AccountID: account, Status: acme.StatusValid, Profile: "tls",
		Expires: time.Now().Add(7 * 24 * time.Hour), CreatedAt: time.Now().UTC().Add(time.Duration(e.orders) * time.Millisecond)}
	for _, n := range names {
		o.Identifiers = append(o.Identifiers, storage.Identifier{Type: "dns", Value: n})
	}
	if err := e.store.CreateOrder(t.Context(), o, nil); err != nil {
		t.Fatal(err)
	}
	csr := issuancetest.CSR(t, e.leafKey, &x509.CertificateRequest{DNSNames: names})
	got, err := e.svc.Issue(t.Context(), issuance.Request{CSR: csr, DNSNames: names, Requester: o.ID})
	if err != nil {
		t.Fatal(err)
	}
	o.CertSerial = fmt.Sprintf("%x", got.Cert.SerialNumber)
	if err := e.store.UpdateOrder(t.Context(), o, acme.StatusValid); err != nil {
		t.Fatal(err)
	}
	return got.Cert
}

// run runs `anvil admin ARGS --config serve.yaml` and returns its output.
func (e *adminEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := admin(append(args, "--config", e.cfgPath), &out)
	return out.String(), err
}

func (e *adminEnv) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run(t, args...)
	if err != nil {
		t.Fatalf("anvil admin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runJSON runs a command with --json and decodes its output into v.
func (e *adminEnv) runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := e.mustRun(t, append(args, "--json")...)
	reflect.ValueOf(v).Elem().SetZero() // decode into a clean value: omitted fields stay zero
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("anvil admin %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func hexSerial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

func rowSerials(rows []certRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Serial)
	}
	return out
}

// sameList compares lists as sets: ledger times have the issuance service's
// precision, so certificates issued within it have no "newest".
func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func TestAdminCertList(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a")
	e.account(t, "acct-b")
	a1 := e.issue(t, "acct-a", "a.example.com", "www.a.example.com")
	b1 := e.issue(t, "acct-b", "b.example.com")
	b2 := e.issue(t, "acct-b", "a.example.com")

	var rows []certRow
	e.runJSON(t, &rows, "cert", "list", "--account", "acct-a")
	sameList(t, "--account acct-a", rowSerials(rows), []string{hexSerial(a1)})
	if r := rows[0]; r.Status != "valid" || r.AccountID != "acct-a" || r.Issuer != e.iss.Name() ||
		strings.Join(r.Names, ",") != "a.example.com,www.a.example.com" || !r.Expires.Equal(a1.NotAfter) {
		t.Fatalf("--account acct-a: row %+v does not describe the certificate", r)
	}
	e.runJSON(t, &rows, "cert", "list", "--name", "a.example.com")
	sameList(t, "--name a.example.com", rowSerials(rows), []string{hexSerial(b2), hexSerial(a1)})
	e.runJSON(t, &rows, "cert", "list", "--name", "a.example.com", "--account", "acct-b")
	sameList(t, "--name and --account", rowSerials(rows), []string{hexSerial(b2)})
	e.runJSON(t, &rows, "cert", "list", "--limit", "1")
	if len(rows) != 1 {
		t.Fatalf("--limit 1: %d rows", len(rows))
	}
	// Serials as an operator pastes them: colons, upper case, a leading zero.
	colons := strings.ToUpper(strings.Join(splitPairs("0"+hexSerial(b1)), ":"))
	e.runJSON(t, &rows, "cert", "list", "--serial", colons)
	sameList(t, "--serial "+colons, rowSerials(rows), []string{hexSerial(b1)})
	// Expiry windows: the profile gives 90 days.
	e.runJSON(t, &rows, "cert", "list", "--expires-within", "30d")
	sameList(t, "--expires-within 30d", rowSerials(rows), []string{})
	e.runJSON(t, &rows, "cert", "list", "--expires-within", "91d")
	if len(rows) != 3 {
		t.Fatalf("--expires-within 91d: %d certificates, want 3", len(rows))
	}
	e.runJSON(t, &rows, "cert", "list", "--expires-after", "80d", "--expires-before", time.Now().AddDate(0, 0, 100).Format(time.DateOnly))
	if len(rows) != 3 {
		t.Fatalf("--expires-after 80d --expires-before a date: %d certificates, want 3", len(rows))
	}
	if _, err := e.run(t, "cert", "list", "--expires-after", "soon"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("--expires-after soon: %v, want an error saying what a time looks like", err)
	}

	// The table, for a person.
	out := e.mustRun(t, "cert", "list", "--name", "b.example.com")
	if !strings.HasPrefix(out, "SERIAL") || !strings.Contains(out, hexSerial(b1)) || !strings.Contains(out, "acct-b") ||
		!strings.Contains(out, "valid") || strings.Contains(out, hexSerial(a1)) {
		t.Fatalf("cert list table:\n%s", out)
	}
}

// splitPairs cuts a hex string into byte pairs.
func splitPairs(s string) []string {
	if len(s)%2 == 1 {
		s = "0" + s
	}
	var out []string
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

func TestAdminAccountAndOrderLists(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a", "mailto:a@example.com", "mailto:noc@example.com")
	e.account(t, "acct-b", "mailto:noc@example.com")
	e.issue(t, "acct-a", "a.example.com")
	e.issue(t, "acct-b", "b.example.com", "a.example.com")

	var accts []accountRow
	e.runJSON(t, &accts, "account", "list", "--contact", "mailto:noc@example.com")
	if len(accts) != 2 || accts[0].ID != "acct-b" || accts[1].ID != "acct-a" {
		t.Fatalf("account list --contact: %+v, want acct-b then acct-a", accts)
	}
	e.runJSON(t, &accts, "account", "list", "--contact", "mailto:a@example.com")
	if len(accts) != 1 || accts[0].ID != "acct-a" || accts[0].Status != "valid" || accts[0].CreatedIP != "192.0.2.1" {
		t.Fatalf("account list --contact mailto:a@example.com: %+v", accts)
	}
	out := e.mustRun(t, "account", "list", "--id", "acct-a")
	if !strings.Contains(out, "acct-a") || !strings.Contains(out, "mailto:a@example.com,mailto:noc@example.com") || strings.Contains(out, "acct-b") {
		t.Fatalf("account list --id acct-a:\n%s", out)
	}

	var orders []orderRow
	e.runJSON(t, &orders, "order", "list", "--name", "a.example.com")
	if len(orders) != 2 || orders[0].AccountID != "acct-b" || orders[1].AccountID != "acct-a" {
		t.Fatalf("order list --name a.example.com: %+v", orders)
	}
	if strings.Join(orders[0].Names, ",") != "b.example.com,a.example.com" || orders[0].Status != "valid" || orders[0].CertSerial == "" {
		t.Fatalf("order list: row %+v does not describe the order", orders[0])
	}
	e.runJSON(t, &orders, "order", "list", "--account", "acct-a", "--status", "pending")
	if len(orders) != 0 {
		t.Fatalf("order list --status pending: %+v, want none", orders)
	}
	out = e.mustRun(t, "order", "list", "--account", "acct-a")
	if !strings.HasPrefix(out, "ORDER") || !strings.Contains(out, "a.example.com") || strings.Contains(out, "b.example.com") {
		t.Fatalf("order list table:\n%s", out)
	}
}

func TestAdminAccountDeactivate(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a")
	e.issue(t, "acct-a", "a.example.com")

	// While anvil serve holds the SQLite database, its account cache would
	// keep the account alive: the command refuses.
	release, err := lockSQLiteServe(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.run(t, "account", "deactivate", "--id", "acct-a"); err == nil || !strings.Contains(err.Error(), "stop it") {
		t.Fatalf("deactivate beside a running server: %v, want a refusal saying to stop it", err)
	}
	release()

	out := e.mustRun(t, "account", "deactivate", "--id", "acct-a")
	if !strings.Contains(out, "revoked") || !strings.Contains(out, "revoke-all") {
		t.Fatalf("deactivate said:\n%s", out)
	}
	a, err := e.store.GetAccount(t.Context(), "acct-a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != acme.StatusRevoked {
		t.Fatalf("account status %q after deactivation, want revoked", a.Status)
	}
	if _, err := e.run(t, "account", "deactivate", "--id", "acct-a"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second deactivation: %v", err)
	}
	if _, err := e.run(t, "account", "deactivate", "--id", "nobody"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("deactivation of an unknown account: %v", err)
	}
	// The certificate is still valid: deactivation does not revoke.
	var rows []certRow
	e.runJSON(t, &rows, "cert", "list", "--account", "acct-a")
	if len(rows) != 1 || rows[0].Status != "valid" {
		t.Fatalf("certificates of the deactivated account: %+v", rows)
	}
}

func TestAdminRevokeAll(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a")
	e.account(t, "acct-b")
	a1 := e.issue(t, "acct-a", "a.example.com", "www.a.example.com")
	a2 := e.issue(t, "acct-a", "other.example.com")
	b1 := e.issue(t, "acct-b", "a.example.com")
	b2 := e.issue(t, "acct-b", "b.example.com")

	if _, err := e.run(t, "revoke-all", "--name", "a.example.com"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("revoke-all without --reason: %v", err)
	}
	if _, err := e.run(t, "revoke-all", "--name", "a.example.com", "--account", "acct-a", "--reason", "superseded"); err == nil {
		t.Fatal("revoke-all with both --name and --account: no error")
	}

	var res revokeAllResult
	e.runJSON(t, &res, "revoke-all", "--name", "a.example.com", "--reason", "keyCompromise", "--dry-run")
	sameList(t, "dry run", rowSerials(res.Revoked), []string{hexSerial(b1), hexSerial(a1)})
	revoked := func() map[string]int {
		out := map[string]int{}
		for _, c := range []*x509.Certificate{a1, a2, b1, b2} {
			got, err := e.store.GetCertificate(t.Context(), hexSerial(c))
			if err != nil {
				t.Fatal(err)
			}
			if !got.RevokedAt.IsZero() {
				out[got.Serial] = got.Reason
			}
		}
		return out
	}
	if r := revoked(); len(r) != 0 {
		t.Fatalf("a dry run revoked %v", r)
	}

	out := e.mustRun(t, "revoke-all", "--name", "a.example.com", "--reason", "keyCompromise")
	if !strings.HasPrefix(out, "revoked 2 certificates (keyCompromise); 0 were revoked already") {
		t.Fatalf("revoke-all --name said:\n%s", out)
	}
	if r := revoked(); len(r) != 2 || r[hexSerial(a1)] != 1 || r[hexSerial(b1)] != 1 {
		t.Fatalf("after revoke-all --name a.example.com: revoked %v, want %s and %s with reason 1", r, hexSerial(a1), hexSerial(b1))
	}
	// By account: the one already revoked is reported, not revoked again.
	e.runJSON(t, &res, "revoke-all", "--account", "acct-a", "--reason", "superseded")
	sameList(t, "revoke-all --account acct-a", rowSerials(res.Revoked), []string{hexSerial(a2)})
	sameList(t, "revoke-all --account acct-a, already revoked", res.AlreadyRevoked, []string{hexSerial(a1)})
	if r := revoked(); len(r) != 3 || r[hexSerial(a2)] != 4 || r[hexSerial(a1)] != 1 {
		t.Fatalf("after revoke-all --account: %v", r)
	}
	if _, ok := revoked()[hexSerial(b2)]; ok {
		t.Fatal("a certificate of another account for another name was revoked")
	}
	// The CRL publisher sees them: they are listed for the issuer's CRL.
	list, err := e.store.ListRevokedShard(t.Context(), e.iss.Name(), 0, time.Now())
	if err != nil || len(list) != 3 {
		t.Fatalf("ListRevokedShard: %d entries, %v; want 3", len(list), err)
	}
}

// Run as root on a database no server has opened yet, deactivation makes the
// serve-lock file owned like the database, so that the server's own user can
// still take the lock afterwards.
func TestAdminDeactivateLeavesLockToTheDatabaseOwner(t *testing.T) {
	e := newAdminEnv(t, "")
	e.account(t, "acct-a")
	// As root the database is given to another user, as /var/lib/anvil is to
	// anvil; as anyone else, the database is the caller's own.
	owner := os.Geteuid()
	if owner == 0 {
		owner = 4242
		for _, f := range []string{e.dbPath, e.dbPath + "-wal", e.dbPath + "-shm"} {
			if err := os.Chown(f, owner, owner); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	e.mustRun(t, "account", "deactivate", "--id", "acct-a")
	fi, err := os.Stat(e.dbPath + ".serve-lock")
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner || fi.Mode().Perm() != 0o600 {
		t.Fatalf("serve-lock owned by %d mode %v, want %d and 0600", st.Uid, fi.Mode().Perm(), owner)
	}
}
