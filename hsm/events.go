package hsm

import (
	"fmt"
)

// Event kinds a token reports through Config.OnEvent.
const (
	// EventDown: the token stopped signing (a failed call that a retry did not
	// cure, a hang, a lost token); recovery has started.
	EventDown = "down"
	// EventRecovered: the token signs again after being down, refusing the
	// login, or returning a signature that did not verify.
	EventRecovered = "recovered"
	// EventLoginRefused: the token refused the PIN; nothing logs in again
	// until Token.Relogin.
	EventLoginRefused = "login_refused"
	// EventSignatureCheckFailed: a signature from the token did not verify with
	// the key's public key.
	EventSignatureCheckFailed = "signature_check_failed"
)

// Event is something that happened to a token that an operator must be able to
// see afterwards, for the audit log. Key is the key label when the event is
// about one key; Err says why, when there is a why.
type Event struct {
	Token, Key, Kind string
	Err              error
}

// Health states.
const (
	HealthOK           = "ok"
	HealthDegraded     = "degraded"
	HealthDown         = "down"
	HealthLoginRefused = "login refused"
)

// Health is a token's state as last seen by the calls made through it.
type Health struct {
	State string // one of the Health* constants
	Err   error  // why the state is not ok
}

func (h Health) String() string {
	if h.Err == nil {
		return h.State
	}
	return h.State + ": " + h.Err.Error()
}

// Health reports what the token's last calls showed. It never calls the module,
// so it answers at once even while the module hangs: a sign in progress that
// will time out is not known yet, and the token is reported as it was.
func (t *Token) Health() Health {
	st := t.state.Load()
	switch {
	case st.loginRefused != nil:
		return Health{HealthLoginRefused, st.loginRefused}
	case st.ctx == nil:
		return Health{HealthDown, st.down}
	}
	if d := t.degraded.Load(); d != nil {
		return Health{HealthDegraded, d.err}
	}
	return Health{State: HealthOK}
}

// degradation is why a token is reported degraded.
type degradation struct{ err error }

// event logs nothing; it hands ev to Config.OnEvent, if set.
func (t *Token) event(kind, key string, err error) {
	if t.cfg.OnEvent != nil {
		t.cfg.OnEvent(Event{Token: t.name, Key: key, Kind: kind, Err: err})
	}
}

// signatureCheckFailed records that k returned a signature that does not
// verify: counted per key, logged at ERROR, reported as an event, and the token
// reported degraded until it signs correctly again.
func (t *Token) signatureCheckFailed(k *Key, cause error) {
	k.sigCheckFailures.Add(1)
	t.stats.sigCheckFailures.Add(1)
	err := fmt.Errorf("key %q: %w: %w", k.ref.Label, ErrSignatureCheckFailed, cause)
	t.degraded.Store(&degradation{err: err})
	t.cfg.Logger.Error("hsm token returned a signature that does not verify; nothing signed with it is used",
		"module", t.cfg.ModulePath, "token", t.name, "key", k.ref.Label, "error", cause.Error())
	t.event(EventSignatureCheckFailed, k.ref.Label, err)
}

// signedCorrectly clears a degraded state once a signature verifies again.
func (t *Token) signedCorrectly(k *Key) {
	d := t.degraded.Load()
	if d == nil || !t.degraded.CompareAndSwap(d, nil) {
		return
	}
	t.cfg.Logger.Info("hsm token signs correctly again", "module", t.cfg.ModulePath, "token", t.name, "key", k.ref.Label)
	t.event(EventRecovered, k.ref.Label, nil)
}

// KeyStats are a key's cumulative counts since it was found, for metrics.
type KeyStats struct {
	Label                  string
	SignatureCheckFailures uint64
}

// KeyStats returns the counts of every key found through the token, one entry
// per label (a key found twice, say as issuer and OCSP signer, is summed), so
// that the label can name a metric series.
func (t *Token) KeyStats() []KeyStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]KeyStats, 0, len(t.keys))
	index := map[string]int{}
	for _, k := range t.keys {
		i, ok := index[k.ref.Label]
		if !ok {
			i = len(out)
			index[k.ref.Label] = i
			out = append(out, KeyStats{Label: k.ref.Label})
		}
		out[i].SignatureCheckFailures += k.sigCheckFailures.Load()
	}
	return out
}

// Relogin re-reads the PIN source and, if the token refused the PIN before,
// logs in once with the PIN just read: the operator's way (SIGHUP) to say the
// PIN is fixed. It never logs in otherwise. A token whose login was not refused
// keeps the new PIN for its next recovery and is left alone.
func (t *Token) Relogin() error {
	pin, err := t.cfg.PIN.Read()
	if err != nil {
		return t.err("re-read the PIN", "", nil, err)
	}
	t.refreshRefused.Store(nil)
	t.mu.Lock()
	t.pin = pin
	refused := t.state.Load().loginRefused != nil && !t.closed
	t.mu.Unlock()
	if !refused {
		return nil
	}
	t.mod.mu.Lock()
	err = t.reopen()
	t.mod.mu.Unlock()
	if err == nil {
		t.stats.recoveries.Add(1)
		t.cfg.Logger.Info("hsm token logged in again at the operator's request", "module", t.cfg.ModulePath, "token", t.name)
		t.event(EventRecovered, "", nil)
		return nil
	}
	t.stats.recoveryFailures.Add(1)
	if refused := t.noteRefused(err); refused != nil {
		return t.err("log in again", "", nil, refused)
	}
	// Not the PIN this time: recover as from any other fault.
	t.mu.Lock()
	if st := t.state.Load(); st.ctx == nil && !t.closed {
		t.state.Store(&tokenState{gen: st.gen + 1, down: err})
	}
	t.mu.Unlock()
	t.mod.startRecovery()
	return err
}

// noteRefused records a refused PIN: the token stays down, nothing logs in
// again until Relogin. When err was a refused PIN, it returns the error that
// says so (an ErrLoginRefused); otherwise nil.
func (t *Token) noteRefused(err error) error {
	if !pinRefused(err) {
		return nil
	}
	refused := fmt.Errorf("%w: %w; fix the PIN source, then send SIGHUP (Anvil does not retry on its own, so as not to lock the PIN)", ErrLoginRefused, err)
	t.mu.Lock()
	st := t.state.Load()
	if !t.closed && st.ctx == nil {
		t.state.Store(&tokenState{gen: st.gen + 1, down: refused, loginRefused: refused})
	}
	t.mu.Unlock()
	t.stats.loginRefusals.Add(1)
	t.cfg.Logger.Error("hsm token refused the PIN; not logging in again until SIGHUP",
		"module", t.cfg.ModulePath, "token", t.name, "error", err.Error())
	t.event(EventLoginRefused, "", refused)
	return refused
}
