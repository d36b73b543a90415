package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/lego"

	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// faultLoad runs lego clients in a loop of complete ACME flows against a CA
// and records when each flow ended, and how.
type faultLoad struct {
	t  *testing.T
	ca *CA

	mu    sync.Mutex
	flows []flowResult
	stop  chan struct{}
	wg    sync.WaitGroup
}

type flowResult struct {
	end  time.Time
	err  error
	leaf *x509.Certificate
	pem  []byte
}

func startFaultLoad(t *testing.T, ca *CA, clients int) *faultLoad {
	l := &faultLoad{t: t, ca: ca, stop: make(chan struct{})}
	for c := 0; c < clients; c++ {
		client, user := legoClient(t, ca, newKey(t), func(cfg *lego.Config) {
			cfg.Certificate.OverallRequestLimit = 1000
		})
		register(t, client, user)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name := fmt.Sprintf("f%d-%d.faults.anvil-e2e.com", c, i)
				res, err := client.Certificate.Obtain(context.Background(), obtainReq(name))
				r := flowResult{end: time.Now(), err: err}
				if err == nil {
					r.pem = res.Certificate
				}
				l.mu.Lock()
				l.flows = append(l.flows, r)
				l.mu.Unlock()
				if err != nil {
					// A CA that cannot sign fails finalizes fast; do not spin.
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *faultLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *faultLoad) snapshot() []flowResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]flowResult(nil), l.flows...)
}

// waitIssued waits until n more certificates were issued after since, and
// returns when the n-th came.
func (l *faultLoad) waitIssued(since time.Time, n int, what string) time.Time {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got []time.Time
		for _, f := range l.snapshot() {
			if f.err == nil && f.end.After(since) {
				got = append(got, f.end)
			}
		}
		if len(got) >= n {
			return got[n-1]
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: %d certificates issued in 60s, want %d\n%s", what, len(got), n, tail(l.ca.Log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// phase sums up the flows that ended between from and to: how many got a
// certificate, how many failed, and the longest stretch without an issuance.
func (l *faultLoad) phase(from, to time.Time) (issued, failed int, gap time.Duration) {
	last := from
	for _, f := range l.snapshot() {
		if f.end.Before(from) || f.end.After(to) {
			continue
		}
		if f.err != nil {
			failed++
			continue
		}
		issued++
		gap = max(gap, f.end.Sub(last))
		last = f.end
	}
	return issued, failed, max(gap, to.Sub(last))
}

// recoveredAfterFirstFailure is the time from the first failed flow after
// since to the first certificate issued after that failure.
func (l *faultLoad) recoveredAfterFirstFailure(since time.Time) time.Duration {
	var failedAt time.Time
	for _, f := range l.snapshot() {
		if f.end.Before(since) {
			continue
		}
		if f.err != nil && failedAt.IsZero() {
			failedAt = f.end
		}
		if f.err == nil && !failedAt.IsZero() && f.end.After(failedAt) {
			return f.end.Sub(failedAt)
		}
	}
	return 0
}

// adminGet fetches a path of the admin listener and how long it took.
func adminGet(t *testing.T, ca *CA, path string) (int, string, time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ca.AdminPort, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

// metric sums every series of a metric on /metrics.
func metric(t *testing.T, ca *CA, name string) float64 {
	t.Helper()
	_, body, _ := adminGet(t, ca, "/metrics")
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func waitHealth(t *testing.T, ca *CA, what string, cond func(code int, body string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body, _ := adminGet(t, ca, "/health")
		if cond(code, body) {
			return time.Since(start)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%s: /health still says %d %q after 60s", what, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHSMFaultsUnderLoad runs `anvil serve` on the fault-injection module in
// front of SoftHSM2, under a few lego clients running complete ACME flows, and
// injects one fault after another: scattered C_Sign errors, corrupted
// signatures, a hung module, and a refused PIN. It logs the numbers (failed
// finalizes, longest issuance gap, recovery times) for the notes.
func TestHSMFaultsUnderLoad(t *testing.T) {
	faults, err := softhsmtest.NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The whole run is on an HSM that allows 4 sessions, with max_sessions: 4.
	set := func(rules string) { faults.SetT(t, "sessions=4\n"+rules) }
	set("")
	ca := NewCA(t, WithHSM(faults.Module, "sign_timeout: 3s", faults.Env()...))
	load := startFaultLoad(t, ca, 4)
	start := time.Now()
	load.waitIssued(start, 8, "baseline")

	// 1. Twenty failing C_Sign calls scattered under load: each is retried on
	// another session, so finalizes do not fail and issuance does not stop.
	from := time.Now()
	retriesBefore := metric(t, ca, "anvil_hsm_sign_retries_total")
	set("C_Sign error=CKR_DEVICE_ERROR every=4 count=20")
	// 20 faults every 4th call have all fired after 80 signatures.
	to := load.waitIssued(from, 80, "scattered C_Sign errors")
	issued, failed, gap := load.phase(from, to)
	retries := metric(t, ca, "anvil_hsm_sign_retries_total") - retriesBefore
	t.Logf("scattered errors: 20 failing C_Sign calls over %s: %d issued, %d failed finalizes, %.0f signs retried, longest issuance gap %s",
		to.Sub(from).Round(time.Millisecond), issued, failed, retries, gap.Round(time.Millisecond))
	// A retry that meets a second fault takes the token down for a moment:
	// the finalizes in flight then fail, one per client at most.
	if failed > 5 || gap > 5*time.Second {
		t.Errorf("20 scattered C_Sign errors cost %d failed finalizes and a %s issuance gap; want at most 5 and no gap over 5s", failed, gap)
	}
	set("")

	// 2. Corrupted signatures: never in a client's hands, counted, visible.
	from = time.Now()
	set("C_Sign corrupt every=3 count=5")
	to = load.waitIssued(from, 20, "corrupted signatures")
	issued, failed, _ = load.phase(from, to)
	bad := metric(t, ca, "anvil_hsm_signature_check_failures_total")
	t.Logf("corrupted signatures: 5 injected: %d issued, %d failed finalizes, anvil_hsm_signature_check_failures_total %.0f", issued, failed, bad)
	if bad != 5 {
		t.Errorf("anvil_hsm_signature_check_failures_total = %.0f, want 5", bad)
	}
	if n := strings.Count(ca.Log(), "returned a signature that does not verify"); n != 5 {
		t.Errorf("%d ERROR lines about a signature that does not verify, want 5", n)
	}
	set("")

	// 3. The HSM closes every session (as on a restart of its service): the
	// token goes down and comes back without a restart of anvil.
	from = time.Now()
	set("closeall")
	load.waitIssued(from, 1, "a sign after every session was closed") // the close happens at the next call
	to = load.waitIssued(from, 10, "issuance after every session was closed")
	issued, failed, gap = load.phase(from, to)
	t.Logf("closed sessions: %d failed finalizes, longest issuance gap %s, first certificate %s after the first failure (the recovery)",
		failed, gap.Round(time.Millisecond), load.recoveredAfterFirstFailure(from).Round(time.Millisecond))
	set("")

	// 4. A hung module: /health answers at once from what the server knows,
	// the hang is cut at sign_timeout, and issuance resumes when it ends.
	set("C_Sign hang=0") // until the control file changes
	hungAt := time.Now()
	var slowest time.Duration
	for time.Since(hungAt) < 5*time.Second {
		_, _, took := adminGet(t, ca, "/health")
		slowest = max(slowest, took)
		time.Sleep(100 * time.Millisecond)
	}
	code, body, _ := adminGet(t, ca, "/health")
	t.Logf("hung module: slowest /health in the first 5s %s; then %d %q", slowest.Round(time.Microsecond), code, strings.TrimSpace(body))
	if slowest > 2*time.Second {
		t.Errorf("/health took %s while the module hung: it waits for the module", slowest)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "down") {
		t.Errorf("/health after sign_timeout: %d %q, want 503 saying the token is down", code, body)
	}
	set("")
	cleared := time.Now()
	back := load.waitIssued(cleared, 1, "issuance after the hang")
	t.Logf("hung module: issuance resumed %s after the hang ended", back.Sub(cleared).Round(time.Millisecond))
	waitHealth(t, ca, "after the hang", func(code int, _ string) bool { return code == http.StatusOK })

	// 5. A refused PIN: no C_Login until SIGHUP, /health and a metric say so.
	set("closeall\nC_Login error=CKR_PIN_INCORRECT")
	waitHealth(t, ca, "login refused", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "login refused") && strings.Contains(body, "CKR_PIN_INCORRECT")
	})
	logins := faults.Logins()
	if v := metric(t, ca, "anvil_hsm_login_refused"); v != 1 {
		t.Errorf("anvil_hsm_login_refused = %v, want 1", v)
	}
	refusedAt := time.Now()
	time.Sleep(3 * time.Second) // clients keep asking; recovery would retry several times
	if n := faults.Logins(); n != logins {
		t.Errorf("C_Login called %d more times in 3s after the PIN was refused; want none until SIGHUP", n-logins)
	}
	_, failedRefused, _ := load.phase(refusedAt, time.Now())
	set("")
	if err := syscall.Kill(ca.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	hup := time.Now()
	back = load.waitIssued(hup, 1, "issuance after SIGHUP")
	t.Logf("refused PIN: %d finalizes failed fast in 3s, %d C_Login calls meanwhile; issuance resumed %s after SIGHUP",
		failedRefused, faults.Logins()-logins-1, back.Sub(hup).Round(time.Millisecond))
	if n := faults.Logins(); n != logins+1 {
		t.Errorf("SIGHUP made %d C_Login calls, want 1", n-logins)
	}
	if v := metric(t, ca, "anvil_hsm_login_refused"); v != 0 {
		t.Errorf("anvil_hsm_login_refused = %v after SIGHUP, want 0", v)
	}
	waitHealth(t, ca, "after SIGHUP", func(code int, _ string) bool { return code == http.StatusOK })

	// No client ever got a certificate that does not verify.
	load.halt()
	issuerPEM, err := os.ReadFile(filepath.Join(ca.Dir, "var/dev/pki/int-ecdsa.pem"))
	if err != nil {
		t.Fatal(err)
	}
	issuer := readChain(t, issuerPEM)[0]
	total, failedTotal := 0, 0
	for _, f := range load.snapshot() {
		if f.err != nil {
			failedTotal++
			continue
		}
		total++
		leaf := readChain(t, f.pem)[0]
		if err := leaf.CheckSignatureFrom(issuer); err != nil {
			t.Errorf("a client got certificate %x whose signature does not verify: %v", leaf.SerialNumber, err)
		}
		verifyBundle(t, ca, f.pem, leaf.DNSNames...)
	}
	t.Logf("in all: %d certificates issued, every one verifies; %d flows failed, over %s", total, failedTotal, time.Since(start).Round(time.Second))

	// Every ledger row has an outcome once the server has stopped: each
	// failed or corrupted signature closed its row as not signed.
	ca.Stop()
	out, err := ca.admin(t, "ledger", "check", "--config", filepath.Base(ca.cfgPath))
	if err != nil {
		t.Fatalf("anvil admin ledger check after the faults: %v\n%s", err, out)
	}
	t.Logf("ledger after the faults:\n%s", out)
	if !strings.Contains(out, "bad_signature") {
		t.Errorf("the corrupted signatures left no not_signed/bad_signature row:\n%s", out)
	}
}
