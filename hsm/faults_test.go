package hsm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// eventLog collects what a token reports through Config.OnEvent.
type eventLog struct {
	mu     sync.Mutex
	events []hsm.Event
}

func (l *eventLog) add(e hsm.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, e.Kind)
	}
	return out
}

func (l *eventLog) count(kind string) int {
	n := 0
	for _, k := range l.kinds() {
		if k == kind {
			n++
		}
	}
	return n
}

// faultRig is a SoftHSM2 token reached through the fault-injection module.
type faultRig struct {
	st     *softhsmtest.Token
	faults *softhsmtest.Faults
	cfg    hsm.Config
	tok    *hsm.Token
	key    *hsm.Key
	events *eventLog
}

// openFaultToken opens a fresh SoftHSM2 token through the fault module, with
// one P-256 key, and no faults yet.
func openFaultToken(t *testing.T, mutate ...func(*hsm.Config)) *faultRig {
	t.Helper()
	st := softhsmtest.New(t)
	f := softhsmtest.NewFaultsT(t)
	r := &faultRig{st: st, faults: f, events: &eventLog{}}
	r.cfg = hsm.Config{
		ModulePath:  f.Module,
		TokenLabel:  st.Label,
		PIN:         hsm.PINSource{File: st.PINFile},
		MaxSessions: 4,
		SignTimeout: 2 * time.Second,
		OpTimeout:   2 * time.Second,
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
		OnEvent:     r.events.add,
	}
	for _, m := range mutate {
		m(&r.cfg)
	}
	tok, err := hsm.Open(r.cfg)
	if err != nil {
		t.Fatalf("open through the fault module: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	r.tok = tok
	if r.key, err = tok.GenerateKey(hsm.KeySpec{Label: "k", Algorithm: hsm.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *faultRig) sign() error {
	d := sha256.Sum256([]byte(time.Now().String()))
	_, err := r.key.SignContext(context.Background(), d[:], crypto.SHA256)
	return err
}

// waitFor polls cond until it holds; the bound only keeps a broken build from
// hanging the test run.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: still not the case after 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// One failed C_Sign is not a dead token: it is tried once more, and 20 such
// failures scattered among 400 signs cost no failed sign and no recovery.
func TestScatteredSignErrorsAreRetriedNotFatal(t *testing.T) {
	for _, code := range []string{"CKR_DEVICE_ERROR", "CKR_SESSION_HANDLE_INVALID", "CKR_GENERAL_ERROR"} {
		t.Run(code, func(t *testing.T) {
			r := openFaultToken(t)
			r.faults.SetT(t, "C_Sign error="+code+" every=19 count=20")
			failed := 0
			for i := 0; i < 400; i++ {
				if err := r.sign(); err != nil {
					failed++
					t.Logf("sign %d: %v", i, err)
				}
			}
			st := r.tok.Stats()
			t.Logf("400 signs with 20 failing C_Sign calls: %d failed, %d retried, %d recoveries", failed, st.SignRetries, st.Recoveries)
			if failed != 0 || st.Recoveries != 0 || r.events.count(hsm.EventDown) != 0 {
				t.Fatalf("%d signs failed and the token went down %d times (events %v); want none: one failed call is retried", failed, st.Recoveries, r.events.kinds())
			}
			// A session error also replaces the context, whose test signature
			// may meet some of the 20 faults instead of the signs here.
			if st.SignRetries == 0 {
				t.Fatal("no sign was retried: the faults did not happen")
			}
		})
	}
}

// A session the HSM dropped stays dead in crypto11's pool; after the retry
// that saved the sign, the context is replaced, so later signs do not keep
// meeting the dead session.
func TestDeadSessionIsReplacedNotRetriedForever(t *testing.T) {
	r := openFaultToken(t)
	r.faults.SetT(t, "C_Sign closesession count=1")
	if err := r.sign(); err != nil {
		t.Fatalf("sign on a session the HSM dropped: %v", err)
	}
	waitFor(t, "the context to be replaced", func() bool { return r.tok.Stats().Refreshes == 1 })
	for i := 0; i < 30; i++ {
		if err := r.sign(); err != nil {
			t.Fatalf("sign %d after the dead session: %v", i, err)
		}
	}
	st := r.tok.Stats()
	t.Logf("stats after a dead session and 30 signs: %+v", st)
	if st.SignRetries != 1 || st.Recoveries != 0 {
		t.Fatalf("%d retries and %d recoveries; want 1 retry (the dead session is gone after it) and no recovery", st.SignRetries, st.Recoveries)
	}
}

// A call that fails twice in a row takes the token down; it comes back by itself.
func TestTwoFailuresInARowTakeTheTokenDownAndItRecovers(t *testing.T) {
	r := openFaultToken(t)
	r.faults.SetT(t, "C_Sign error=CKR_DEVICE_ERROR count=2")
	err := r.sign()
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign failing twice: got %v, want ErrUnavailable", err)
	}
	d := waitFor(t, "recovery", func() bool { return r.sign() == nil })
	t.Logf("recovered in %s", d)
	if r.events.count(hsm.EventDown) != 1 || r.events.count(hsm.EventRecovered) != 1 {
		t.Fatalf("events %v, want one down and one recovered", r.events.kinds())
	}
}

// While signs are refused because the token is down, recovery tries again at
// least every second, whatever MaxBackoff says.
func TestRecoveryAttemptsAreFrequentWhileSignsWait(t *testing.T) {
	r := openFaultToken(t, func(c *hsm.Config) {
		// Without demand, the next attempt would come after an hour.
		c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour
	})
	r.faults.SetT(t, "C_Sign error=CKR_DEVICE_ERROR\nC_OpenSession error=CKR_DEVICE_ERROR")
	if err := r.sign(); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	waitFor(t, "a failed recovery attempt", func() bool { return r.tok.Stats().RecoveryFailures >= 1 })
	r.faults.SetT(t, "")
	cleared := time.Now()
	waitFor(t, "signing to resume while signs wait", func() bool { return r.sign() == nil })
	t.Logf("signing resumed %s after the fault cleared (MaxBackoff 1h)", time.Since(cleared))
}

// A refused PIN is never retried by Anvil: signing fails fast saying so,
// C_Login is not called again, until the operator asks (Relogin, SIGHUP).
func TestRefusedPINIsNotRetriedUntilRelogin(t *testing.T) {
	for _, code := range []string{"CKR_PIN_INCORRECT", "CKR_PIN_LOCKED", "CKR_PIN_EXPIRED", "CKR_PIN_LEN_RANGE"} {
		t.Run(code, func(t *testing.T) {
			r := openFaultToken(t)
			// The HSM logs everyone out and refuses the PIN from now on.
			r.faults.SetT(t, "closeall\nC_Login error="+code)
			if err := r.sign(); err == nil {
				t.Fatal("sign succeeded with every session closed")
			}
			waitFor(t, "login refused", func() bool { return r.tok.Health().State == hsm.HealthLoginRefused })
			logins := r.faults.Logins()
			// Recovery would have tried many times over in this second
			// (MinBackoff 20ms); signs keep asking for the token meanwhile.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				err := r.sign()
				if !errors.Is(err, hsm.ErrUnavailable) || !errors.Is(err, hsm.ErrLoginRefused) {
					t.Fatalf("sign with the login refused: got %v, want ErrUnavailable and ErrLoginRefused", err)
				}
			}
			if n := r.faults.Logins(); n != logins {
				t.Fatalf("C_Login called %d more times after the PIN was refused; want none", n-logins)
			}
			h := r.tok.Health()
			if !strings.Contains(h.String(), "login refused") || !strings.Contains(h.String(), code) {
				t.Fatalf("health %q does not say login refused and why", h)
			}
			if !r.tok.Stats().LoginRefused {
				t.Fatal("Stats().LoginRefused is false")
			}
			if r.events.count(hsm.EventLoginRefused) != 1 {
				t.Fatalf("events %v, want one login_refused", r.events.kinds())
			}

			// The operator asks while the PIN is still refused: exactly one try.
			if err := r.tok.Relogin(); !errors.Is(err, hsm.ErrLoginRefused) {
				t.Fatalf("relogin with the PIN still refused: got %v, want ErrLoginRefused", err)
			}
			if n := r.faults.Logins(); n != logins+1 {
				t.Fatalf("relogin called C_Login %d times, want 1", n-logins)
			}
			time.Sleep(200 * time.Millisecond)
			if n := r.faults.Logins(); n != logins+1 {
				t.Fatalf("C_Login called again on its own after a refused relogin (%d calls)", n-logins)
			}

			// Fixed: one relogin and the token signs again.
			r.faults.SetT(t, "")
			if err := r.tok.Relogin(); err != nil {
				t.Fatalf("relogin with the PIN accepted: %v", err)
			}
			if err := r.sign(); err != nil {
				t.Fatalf("sign after relogin: %v", err)
			}
			if h := r.tok.Health(); h.State != hsm.HealthOK {
				t.Fatalf("health after relogin: %s", h)
			}
			if r.tok.Stats().LoginRefused {
				t.Fatal("Stats().LoginRefused still true after relogin")
			}
		})
	}
}

// A PIN refused at start is one C_Login and a clear error.
func TestOpenWithRefusedPINLogsInOnce(t *testing.T) {
	st := softhsmtest.New(t)
	f := softhsmtest.NewFaultsT(t)
	f.SetT(t, "C_Login error=CKR_PIN_LOCKED")
	_, err := hsm.Open(hsm.Config{ModulePath: f.Module, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	var code pkcs11.Error
	if !errors.Is(err, hsm.ErrLoginRefused) || !errors.As(err, &code) || code != pkcs11.CKR_PIN_LOCKED {
		t.Fatalf("got %v, want ErrLoginRefused wrapping CKR_PIN_LOCKED", err)
	}
	if n := f.Logins(); n != 1 {
		t.Fatalf("C_Login called %d times, want 1", n)
	}
}

// A corrupted signature never leaves hsm: it is an ErrSignatureCheckFailed,
// counted per key, an event, and the token is degraded until it signs
// correctly again.
func TestCorruptedSignatureIsCaughtCountedAndDegrades(t *testing.T) {
	r := openFaultToken(t)
	r.faults.SetT(t, "C_Sign corrupt count=1")
	err := r.sign()
	if !errors.Is(err, hsm.ErrSignatureCheckFailed) {
		t.Fatalf("sign with a corrupted signature: got %v, want ErrSignatureCheckFailed", err)
	}
	t.Logf("corrupted: %v", err)
	if h := r.tok.Health(); h.State != hsm.HealthDegraded {
		t.Fatalf("health after a bad signature: %s, want degraded", h)
	}
	ks := r.tok.KeyStats()
	if len(ks) != 1 || ks[0].Label != "k" || ks[0].SignatureCheckFailures != 1 {
		t.Fatalf("key stats %+v, want one signature check failure for k", ks)
	}
	if ev := r.events.kinds(); len(ev) != 1 || ev[0] != hsm.EventSignatureCheckFailed {
		t.Fatalf("events %v, want one signature_check_failed", ev)
	}
	if err := r.sign(); err != nil {
		t.Fatalf("next sign: %v", err)
	}
	if h := r.tok.Health(); h.State != hsm.HealthOK {
		t.Fatalf("health after a good signature: %s, want ok", h)
	}
	if r.events.count(hsm.EventRecovered) != 1 {
		t.Fatalf("events %v, want recovered after the good signature", r.events.kinds())
	}
	if st := r.tok.Stats(); st.SignatureCheckFailures != 1 || st.Recoveries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Health answers from the token's known state: while C_Sign hangs, before and
// after SignTimeout gives up on it, it never waits for the module.
func TestHealthNeverWaitsForAHungModule(t *testing.T) {
	r := openFaultToken(t, func(c *hsm.Config) { c.SignTimeout = 500 * time.Millisecond })
	r.faults.SetT(t, "C_Sign hang=0") // until the control file changes
	signed := make(chan error, 1)
	go func() { signed <- r.sign() }()
	time.Sleep(100 * time.Millisecond) // the sign is inside the module now
	health := func() hsm.Health {
		done := make(chan hsm.Health, 1)
		start := time.Now()
		go func() { done <- r.tok.Health() }()
		select {
		case h := <-done:
			t.Logf("health %q in %s", h, time.Since(start))
			return h
		case <-time.After(5 * time.Second):
			t.Fatal("Health waited for the hung module")
			return hsm.Health{}
		}
	}
	if h := health(); h.State != hsm.HealthOK {
		t.Fatalf("health during a hang not yet timed out: %s, want ok (the last known state)", h)
	}
	if err := <-signed; !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("hung sign: got %v, want ErrUnavailable", err)
	}
	if h := health(); h.State != hsm.HealthDown {
		t.Fatalf("health after the sign timed out: %s, want down", h)
	}
	r.faults.SetT(t, "")
	d := waitFor(t, "recovery after the hang", func() bool { return r.sign() == nil })
	t.Logf("signing resumed %s after the hang ended", d)
	if h := health(); h.State != hsm.HealthOK {
		t.Fatalf("health after recovery: %s", h)
	}
}

func BenchmarkHealth(b *testing.B) {
	st := softhsmtest.New(b)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	for b.Loop() {
		_ = tok.Health()
	}
}

// A token that allows 4 sessions serves max_sessions 4 at full concurrency;
// one that allows fewer sessions than max_sessions says so.
func TestStartsAndSignsWithinMaxSessions(t *testing.T) {
	r := openFaultToken(t, func(c *hsm.Config) { c.SessionWait = 10 * time.Second })
	ref := r.key.Ref()
	r.tok.Close()

	r.faults.SetT(t, "sessions=4")
	tok, err := hsm.Open(r.cfg)
	if err != nil {
		t.Fatalf("open with max_sessions 4 on a token allowing 4: %v", err)
	}
	defer tok.Close()
	k, err := tok.FindKey(ref)
	if err != nil {
		t.Fatalf("find key: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				d := sha256.Sum256([]byte{byte(g), byte(i)})
				if _, err := k.SignContext(context.Background(), d[:], crypto.SHA256); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sign under a 4-session limit with max_sessions 4: %v", err)
	}
	tok.Close()

	r.faults.SetT(t, "sessions=1")
	tok2, err := hsm.Open(r.cfg)
	if err == nil {
		defer tok2.Close()
		_, err = tok2.FindKey(ref)
	}
	if err == nil || !strings.Contains(err.Error(), "allows fewer sessions than hsm.max_sessions (4)") {
		t.Fatalf("token allowing 1 session: got %v, want an error saying it allows fewer sessions than hsm.max_sessions", err)
	}
	t.Logf("one session allowed: %v", err)
}

// What verifying every signature in hsm costs beside the HSM signature
// itself: "sign" is SignContext (the HSM signature and the verification),
// "verify" the verification alone, in the same run.
func BenchmarkVerifySignature(b *testing.B) {
	st := softhsmtest.New(b)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048} {
		k, err := tok.GenerateKey(hsm.KeySpec{Label: string(alg), Algorithm: alg})
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256([]byte("anvil"))
		sig, err := k.Sign(nil, d[:], crypto.SHA256)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg)+"/sign", func(b *testing.B) {
			for b.Loop() {
				if _, err := k.SignContext(context.Background(), d[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/verify", func(b *testing.B) {
			for b.Loop() {
				if err := hsm.VerifyForTest(k.Public(), d[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A background refresh (replacing a context whose pool holds a dead session)
// logs in; when the token refuses that PIN, nothing logs in again on its own,
// however many sessions die afterwards: retries would lock a real HSM's PIN.
func TestRefreshDoesNotLogInAgainAfterARefusedPIN(t *testing.T) {
	r := openFaultToken(t)
	logins := r.faults.Logins()
	r.faults.SetT(t, "C_Sign closesession every=3\nC_Login error=CKR_PIN_INCORRECT")
	for i := 0; i < 30; i++ {
		r.sign() // some may fail once the pool holds only dead sessions: not the point here
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // any refresh still under way ends
	if n := r.faults.Logins() - logins; n != 1 {
		t.Fatalf("%d C_Login calls after the token refused the PIN, want exactly 1", n)
	}
	if r.events.count(hsm.EventLoginRefused) < 1 {
		t.Errorf("events %v, want login_refused", r.events.kinds())
	}
}
