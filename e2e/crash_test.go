package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/registration"
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/crypto/ocsp"
)

// kill9 kills `anvil serve` with SIGKILL, as a power cut would, and waits for
// it to be gone. Start runs it again on the same database.
func (ca *CA) kill9(t *testing.T) {
	t.Helper()
	ca.mu.Lock()
	cmd, exited := ca.cmd, ca.exited
	ca.cmd = nil
	ca.mu.Unlock()
	if cmd == nil {
		t.Fatal("kill9: the server is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	<-exited
}

// interrupted is an order a kill left in processing, with the lease its dead
// finalizer held: without recovery nobody could resume it before then.
type interrupted struct {
	id       string
	oldLease time.Time
}

// kill -9 `anvil serve` (SQLite, SoftHSM2) several times while real ACME
// flows (lego, concurrent) have signatures in flight, restarting it each time
// on the same database. Afterwards: `anvil admin ledger check` is clean, every
// downloaded certificate is in the ledger, no order has two certificates, the
// orders each kill interrupted finished within seconds of the restart (before
// the dead process's lease would have let anyone else resume them), and every
// abandoned serial is in its issuer's CRL as revoked (cessationOfOperation).
func TestCrashRecovery(t *testing.T) {
	begin := time.Now()
	ca := NewCA(t)
	t.Logf("server up in %s", time.Since(begin).Round(time.Millisecond))
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(ca.Dir, "var/dev/anvil.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}

	// Workers obtain certificates until told to stop; a flow cut by a kill
	// fails and is tried again, as any ACME client would.
	var stop atomic.Bool
	var mu sync.Mutex
	var downloaded []*x509.Certificate
	var failures atomic.Int32
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		keyType := certcrypto.EC256
		if w%2 == 1 {
			keyType = certcrypto.RSA2048 // signed by the RSA issuer: a slower signature
		}
		wg.Go(func() {
			client, user := legoClient(t, ca, newKey(t))
			for attempt := 0; ; attempt++ {
				reg, err := client.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true})
				if err == nil {
					user.reg = reg
					break
				}
				if attempt > 100 {
					t.Errorf("worker %d: register: %v", w, err)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("w%d-%d.crash.anvil-e2e.com", w, i)
				deadline := time.Now().Add(30 * time.Second)
				for {
					res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: keyType})
					if err == nil {
						leaf := readChain(t, res.Certificate)[0]
						mu.Lock()
						downloaded = append(downloaded, leaf)
						mu.Unlock()
						break
					}
					failures.Add(1)
					if time.Now().After(deadline) {
						t.Errorf("obtain %s: still failing after 30 s: %v", name, err)
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		})
	}

	// inFlight is what a kill can interrupt: orders in processing and intents
	// without an outcome.
	inFlight := func() int {
		return count(`SELECT (SELECT count(*) FROM orders WHERE status = 'processing') + (SELECT count(*) FROM certificates WHERE outcome = '')`)
	}
	var allInterrupted []interrupted
	var openAtKill []string
	var recoveries []time.Duration
	const kills = 4
	for k := range kills {
		// Let flows run, then kill at a moment a signature is in flight (an
		// intent without an outcome), or else a finalize (an order in
		// processing), or after 4 s of looking, anyway.
		time.Sleep(500 * time.Millisecond)
		look := time.Now().Add(4 * time.Second)
		for time.Now().Before(look) {
			if count(`SELECT count(*) FROM certificates WHERE outcome = ''`) > 0 {
				break
			}
			if time.Until(look) < 2*time.Second && inFlight() > 0 {
				break
			}
		}
		ca.kill9(t)

		// What the dead process left, read while nothing runs.
		var lost []interrupted
		rows, err := db.Query(`SELECT id, lease_until FROM orders WHERE status = 'processing'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var o interrupted
			var lease int64
			if err := rows.Scan(&o.id, &lease); err != nil {
				t.Fatal(err)
			}
			o.oldLease = time.UnixMicro(lease)
			lost = append(lost, o)
		}
		rows.Close()
		rows, err = db.Query(`SELECT serial FROM certificates WHERE outcome = ''`)
		if err != nil {
			t.Fatal(err)
		}
		var open []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			open = append(open, s)
		}
		rows.Close()

		restart := time.Now()
		ca.Start()
		started := time.Since(restart)
		// Each interrupted order finishes (leaves processing) before the dead
		// process's lease ends: it was resumed, not waited for.
		var slowest time.Duration
		for _, o := range lost {
			for {
				var status string
				if err := db.QueryRow(`SELECT status FROM orders WHERE id = ?`, o.id).Scan(&status); err != nil {
					t.Fatal(err)
				}
				if status != "processing" {
					break
				}
				if time.Now().After(o.oldLease) {
					t.Fatalf("kill %d: order %s still processing when the dead process's lease ended (%s after the restart): it waited for the lease", k+1, o.id, time.Since(restart).Round(time.Millisecond))
				}
				time.Sleep(20 * time.Millisecond)
			}
			slowest = max(slowest, time.Since(restart))
			if margin := time.Until(o.oldLease); margin < 0 {
				t.Fatalf("kill %d: order %s finished after its old lease", k+1, o.id)
			}
		}
		if len(lost) > 0 {
			recoveries = append(recoveries, slowest)
		}
		t.Logf("kill %d: %d orders processing and %d intents open at the kill; server up again in %s; interrupted orders done %s after the restart",
			k+1, len(lost), len(open), started.Round(time.Millisecond), slowest.Round(time.Millisecond))
		allInterrupted = append(allInterrupted, lost...)
		openAtKill = append(openAtKill, open...)
	}
	stop.Store(true)
	t.Logf("kills done at %s", time.Since(begin).Round(time.Millisecond))
	wg.Wait()
	t.Logf("flows done at %s", time.Since(begin).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	if len(allInterrupted)+len(openAtKill) == 0 {
		t.Fatalf("none of %d kills caught a finalize in flight: the test proved nothing", kills)
	}

	// Nothing is left processing.
	for deadline := time.Now().Add(20 * time.Second); count(`SELECT count(*) FROM orders WHERE status = 'processing'`) > 0; {
		if time.Now().After(deadline) {
			t.Fatal("orders still processing 20 s after the last flow")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every intent open at a kill was abandoned by the restart.
	for _, s := range openAtKill {
		var outcome string
		var reason int
		if err := db.QueryRow(`SELECT outcome, reason FROM certificates WHERE serial = ?`, s).Scan(&outcome, &reason); err != nil {
			t.Fatal(err)
		}
		// An intent open when the process died may also have been closed by
		// the dying process in the instant before the kill landed.
		if outcome == "" {
			t.Fatalf("serial %s, open at a kill, still has no outcome", s)
		}
	}

	// The ledger check is clean, and its counts go in the notes.
	out, err := ca.admin(t, "ledger", "check", "--config", filepath.Base(ca.cfgPath))
	if err != nil {
		t.Fatalf("anvil admin ledger check: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "total:") {
			t.Logf("ledger after %d kills: %s", kills, strings.TrimPrefix(line, "total: "))
		}
	}

	// Every downloaded certificate is in the ledger, as issued.
	for _, c := range downloaded {
		var der []byte
		var outcome string
		if err := db.QueryRow(`SELECT der, outcome FROM certificates WHERE serial = ?`, c.SerialNumber.Text(16)).Scan(&der, &outcome); err != nil {
			t.Fatalf("downloaded certificate %x: %v", c.SerialNumber, err)
		}
		if string(der) != string(c.Raw) || outcome != "issued" {
			t.Fatalf("downloaded certificate %x: the ledger holds other bytes or outcome %q", c.SerialNumber, outcome)
		}
	}
	// One order, one certificate; every valid order's certificate is stored.
	if n := count(`SELECT count(*) FROM (SELECT order_id FROM certificates WHERE der IS NOT NULL GROUP BY order_id HAVING count(*) > 1)`); n != 0 {
		t.Fatalf("%d orders have more than one certificate", n)
	}
	if n := count(`SELECT count(*) FROM orders o WHERE status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = o.cert_serial AND c.der IS NOT NULL)`); n != 0 {
		t.Fatalf("%d valid orders whose certificate is not in the ledger", n)
	}

	// Every abandoned serial is in its issuer's CRL, revoked with
	// cessationOfOperation (5), and OCSP answers revoked for it. Its lint
	// certificate is exactly what may have been signed.
	abandoned := map[string]map[string]bool{}
	var lintCerts []*x509.Certificate
	var lintIssuers []string
	rows, err := db.Query(`SELECT serial, issuer, lint_der FROM certificates WHERE outcome = 'abandoned'`)
	if err != nil {
		t.Fatal(err)
	}
	nAbandoned := 0
	for rows.Next() {
		var s, iss string
		var lint []byte
		if err := rows.Scan(&s, &iss, &lint); err != nil {
			t.Fatal(err)
		}
		if abandoned[iss] == nil {
			abandoned[iss] = map[string]bool{}
		}
		abandoned[iss][s] = true
		nAbandoned++
		c, err := x509.ParseCertificate(lint)
		if err != nil {
			t.Fatalf("lint certificate of %s: %v", s, err)
		}
		lintCerts, lintIssuers = append(lintCerts, c), append(lintIssuers, iss)
	}
	rows.Close()
	for iss, serials := range abandoned {
		url := fmt.Sprintf("http://localhost:%d/pki/%s.crl", ca.PKIPort, iss)
		for deadline := time.Now().Add(20 * time.Second); ; {
			missing := crlMissing(t, url, serials)
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: abandoned serials not in the CRL as cessationOfOperation after 20 s: %v", url, missing)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for i, c := range lintCerts {
		issuer := readChain(t, mustRead(t, filepath.Join(ca.Dir, "var/dev/pki", lintIssuers[i]+".pem")))[0]
		req, err := ocsp.CreateRequest(c, issuer, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/ocsp", ca.PKIPort), "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r, err := ocsp.ParseResponseForCert(body, c, issuer)
		if err != nil {
			t.Fatalf("OCSP for abandoned serial %x: %v", c.SerialNumber, err)
		}
		if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.CessationOfOperation {
			t.Fatalf("OCSP for abandoned serial %x: status %d reason %d, want revoked, cessationOfOperation", c.SerialNumber, r.Status, r.RevocationReason)
		}
	}
	t.Logf("%d certificates downloaded, %d failed attempts retried, %d orders interrupted, %d serials abandoned, each revoked in the CRL and by OCSP; recovery per kill %v",
		len(downloaded), failures.Load(), len(allInterrupted), nAbandoned, recoveries)
}

// crlMissing fetches a CRL and returns the serials of want it does not list
// with reason cessationOfOperation.
func crlMissing(t *testing.T, url string, want map[string]bool) []string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		if e.ReasonCode == 5 {
			listed[e.SerialNumber.Text(16)] = true
		}
	}
	var missing []string
	for s := range want {
		if !listed[s] {
			missing = append(missing, s)
		}
	}
	return missing
}
