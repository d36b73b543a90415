package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withAudit turns on the audit log, signed by the dev audit key (ceremony 09).
func withAudit() CAOption {
	return func(o *caOptions) {
		o.extraYAML += `audit:
  path: var/dev/audit.jsonl
  sync: always
  key: "pkcs11:token=anvil-dev-online;object=audit;id=%31"
  public_key: var/dev/pki/audit.pub.pem
`
	}
}

// auditCmd runs `anvil admin ...` in the CA's directory with its SoftHSM2
// configuration, as the operator of that machine would.
func (ca *CA) auditCmd(args ...string) (string, error) {
	cmd := exec.Command(anvilBin, append([]string{"admin"}, args...)...)
	cmd.Dir = ca.Dir
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(ca.Dir, "var/dev/softhsm/softhsm2.conf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type auditLine struct {
	Seq  int            `json:"seq"`
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func readAudit(t *testing.T, path string) ([]string, []auditLine) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.SplitAfter(string(b), "\n")
	raw = raw[:len(raw)-1]
	var out []auditLine
	for _, r := range raw {
		var l auditLine
		if err := json.Unmarshal([]byte(r), &l); err != nil {
			t.Fatalf("audit line %q: %v", r, err)
		}
		out = append(out, l)
	}
	return raw, out
}

// crlLists says whether the CRL at url lists cert.
func crlLists(t *testing.T, url string, cert *x509.Certificate) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// Real ACME flows with lego against anvil serve: every security event is in
// the audit log before the client sees the answer, the log verifies after a
// clean shutdown, and an edited or cut log does not, naming the line.
func TestAuditLog(t *testing.T) {
	ca := NewCA(t, withAudit())
	logPath := filepath.Join(ca.Dir, "var/dev/audit.jsonl")
	cfg := filepath.Base(ca.cfgPath)
	ctx := context.Background()

	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	res := mustObtain(t, client, obtainReq("audit.anvil-e2e.com"))
	leaf := leafOf(t, res.Certificate)
	serial := fmt.Sprintf("%x", leaf.SerialNumber)
	reason := uint(1)
	if err := client.Certificate.RevokeWithReason(ctx, res.Certificate, &reason); err != nil {
		t.Fatal(err)
	}
	// Wait for the CRL that lists it, so that its crl.published line is there.
	deadline := time.Now().Add(60 * time.Second)
	for !crlLists(t, leaf.CRLDistributionPoints[0], leaf) {
		if time.Now().After(deadline) {
			t.Fatal("the CRL did not list the revoked certificate within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The events of a request are in the file when its response arrives.
	_, live := readAudit(t, logPath)
	if out, err := ca.auditCmd("audit", "verify", "--config", cfg, "--live"); err != nil || !strings.Contains(out, "verified") {
		t.Fatalf("verify --live of a running server's log: %v\n%s", err, out)
	}
	sum := sha256.Sum256(leaf.Raw)
	want := map[string]func(auditLine) bool{
		"config.loaded":   func(l auditLine) bool { return len(l.Data["sha256"].(string)) == 64 },
		"account.created": func(l auditLine) bool { return l.Data["account"] != "" },
		"authorization.valid": func(l auditLine) bool {
			return l.Data["challenge"] == "http-01" && l.Data["identifier"] == "dns:audit.anvil-e2e.com" &&
				fmt.Sprint(l.Data["contacted"]) == fmt.Sprintf("[127.0.0.1:%d]", ca.HTTPPort)
		},
		"certificate.issued": func(l auditLine) bool {
			return l.Data["serial"] == serial && l.Data["sha256"] == hex.EncodeToString(sum[:]) && l.Data["issuer"] == "int-ecdsa" && l.Data["profile"] == "default"
		},
		"order.finalized": func(l auditLine) bool { return l.Data["serial"] == serial && l.Data["status"] == "valid" },
		"certificate.revoked": func(l auditLine) bool {
			return l.Data["serial"] == serial && l.Data["reason"] == "keyCompromise" && strings.HasPrefix(l.Data["by"].(string), "account ")
		},
		"audit.checkpoint": func(l auditLine) bool { return l.Data["reason"] == "start" },
	}
	found := map[string]bool{}
	for _, l := range live {
		if check, ok := want[l.Type]; ok && check(l) {
			found[l.Type] = true
		}
	}
	for typ := range want {
		if !found[typ] {
			t.Errorf("no %s line as expected in the audit log", typ)
		}
	}

	if err := client.Registration.DeleteRegistration(ctx); err != nil {
		t.Fatal(err)
	}
	// The operator's revocation of another certificate goes to the admin file.
	client2, user2 := legoClient(t, ca, newKey(t))
	register(t, client2, user2)
	res2 := mustObtain(t, client2, obtainReq("audit2.anvil-e2e.com"))
	leaf2 := leafOf(t, res2.Certificate)
	if out, err := ca.auditCmd("revoke", "--config", cfg, "--serial", leaf2.SerialNumber.Text(16), "--reason", "superseded"); err != nil {
		t.Fatalf("admin revoke: %v\n%s", err, out)
	}
	if out, err := ca.auditCmd("audit", "verify", "--config", cfg, "--file", "var/dev/audit.jsonl.admin"); err != nil {
		t.Fatalf("verify the admin audit file: %v\n%s", err, out)
	}
	_, adminLines := readAudit(t, logPath+".admin")
	if len(adminLines) != 3 || adminLines[1].Type != "certificate.revoked" || adminLines[1].Data["by"] != "operator" || adminLines[1].Data["command"] != "revoke" {
		t.Fatalf("admin audit file: %+v", adminLines)
	}
	// Every other admin command that changes state is audited too, each as a
	// signed run of its own: revoke-all, crl regenerate, account deactivate
	// (the last with the server stopped: on SQLite it caches accounts).
	account2 := user2.GetRegistration().Location[strings.LastIndex(user2.GetRegistration().Location, "/")+1:]
	mustObtain(t, client2, obtainReq("audit3.anvil-e2e.com"))
	for _, args := range [][]string{
		{"revoke-all", "--config", cfg, "--account", account2, "--reason", "superseded"},
		{"crl", "regenerate", "--config", cfg},
	} {
		if out, err := ca.auditCmd(args...); err != nil {
			t.Fatalf("admin %s: %v\n%s", args[0], err, out)
		}
	}

	ca.Stop()
	if out, err := ca.auditCmd("account", "deactivate", "--config", cfg, "--id", account2); err != nil {
		t.Fatalf("admin account deactivate: %v\n%s", err, out)
	}
	if out, err := ca.auditCmd("audit", "verify", "--config", cfg, "--file", "var/dev/audit.jsonl.admin"); err != nil {
		t.Fatalf("verify the admin audit file: %v\n%s", err, out)
	}
	_, adminLines = readAudit(t, logPath+".admin")
	var commands []string
	for _, l := range adminLines {
		if l.Type != "audit.checkpoint" {
			commands = append(commands, fmt.Sprint(l.Data["command"], ":", l.Type))
		}
	}
	if want := "revoke:certificate.revoked revoke-all:certificate.revoked crl regenerate:admin.command account deactivate:account.deactivated"; strings.Join(commands, " ") != want {
		t.Fatalf("admin audit events %q, want %q", strings.Join(commands, " "), want)
	}
	out, err := ca.auditCmd("audit", "verify", "--config", cfg)
	if err != nil || !strings.Contains(out, "ends with a shutdown checkpoint") {
		t.Fatalf("verify after a clean shutdown: %v\n%s", err, out)
	}
	t.Logf("verify of the clean log:\n%s", out)
	raw, lines := readAudit(t, logPath)
	if lines[len(lines)-1].Type != "audit.checkpoint" || lines[len(lines)-1].Data["reason"] != "shutdown" {
		t.Fatalf("last line: %s", raw[len(raw)-1])
	}
	deactivated, crl := false, false
	for _, l := range lines {
		deactivated = deactivated || l.Type == "account.deactivated"
		crl = crl || l.Type == "crl.published" && l.Data["issuer"] == "int-ecdsa" && l.Data["entries"].(float64) >= 1
	}
	if !deactivated || !crl {
		t.Errorf("account.deactivated line: %v; crl.published line with the revoked entry: %v", deactivated, crl)
	}

	clean, _ := os.ReadFile(logPath)
	tamper := func(name string, edit func([]string) []string, wantLine int, wantWhy string) {
		t.Helper()
		ls := edit(append([]string(nil), raw...))
		if err := os.WriteFile(logPath, []byte(strings.Join(ls, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := ca.auditCmd("audit", "verify", "--config", cfg)
		want := fmt.Sprintf("line %d: ", wantLine)
		if err == nil || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, want) || !strings.Contains(out, wantWhy) {
			t.Errorf("%s: verify: %v\n%s\nwant %q ... %q", name, err, out, want, wantWhy)
		} else {
			t.Logf("%s:\n%s", name, out)
		}
		os.WriteFile(logPath, clean, 0o600)
	}
	issuedAt := 0
	for i, l := range lines {
		if l.Type == "certificate.issued" && l.Data["serial"] == serial {
			issuedAt = i
		}
	}
	tamper("edit the issued certificate's serial", func(ls []string) []string {
		ls[issuedAt] = strings.Replace(ls[issuedAt], serial, "00"+serial[2:], 1)
		return ls
	}, issuedAt+2, "was edited")
	tamper("remove a line", func(ls []string) []string {
		return append(ls[:issuedAt], ls[issuedAt+1:]...)
	}, issuedAt+1, "lines were removed, inserted or reordered")
	lastSigned := 0 // the last checkpoint before the shutdown one, 1-based
	for i := len(lines) - 2; i >= 0 && lastSigned == 0; i-- {
		if lines[i].Type == "audit.checkpoint" {
			lastSigned = i + 1
		}
	}
	tamper("cut the tail", func(ls []string) []string { return ls[:len(ls)-1] }, lastSigned+1, "does not end with a shutdown checkpoint")
}
