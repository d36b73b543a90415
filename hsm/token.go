package hsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// Config opens one token.
type Config struct {
	ModulePath  string    // the PKCS#11 library
	TokenLabel  string    // select the token by label ...
	TokenSerial string    // ... or by serial number; exactly one of the two
	PIN         PINSource // where the user PIN comes from

	// MaxSessions bounds every session opened on the token, at least 2: one
	// holds the login (crypto11 keeps it open), the others sign, one sign at a
	// time each. More sessions than signing goroutines buy nothing (SoftHSM2
	// signs on the calling thread).
	MaxSessions int
	// SessionWait is how long a sign waits for a free session before ErrBusy.
	SessionWait time.Duration
	// SignTimeout is how long a sign waits for the module to answer before it is
	// abandoned with ErrUnavailable and the token is recovered.
	SignTimeout time.Duration
	// OpTimeout bounds opening, logging in and finding keys during recovery.
	OpTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between recovery attempts.
	// While signs are being refused because the token is down, attempts are at
	// most MaxBackoffWhileWaiting apart.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger
	// OnEvent, when set, is told of every token event (down, recovered, login
	// refused, signature check failed), for the audit log. It is called on the
	// goroutine that saw the event, sometimes a signing one: it must not block.
	OnEvent func(Event)
}

// Defaults for the zero values of Config.
const (
	DefaultMaxSessions = 8
	DefaultSessionWait = 2 * time.Second
	DefaultSignTimeout = 10 * time.Second
	DefaultOpTimeout   = 30 * time.Second
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second

	// MaxBackoffWhileWaiting caps the pause between recovery attempts while
	// signs are waiting for the token.
	MaxBackoffWhileWaiting = time.Second
)

func (c *Config) setDefaults() {
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.SessionWait <= 0 {
		c.SessionWait = DefaultSessionWait
	}
	if c.SignTimeout <= 0 {
		c.SignTimeout = DefaultSignTimeout
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) tokenName() string {
	if c.TokenLabel != "" {
		return c.TokenLabel
	}
	return "serial:" + c.TokenSerial
}

// Token is a logged-in PKCS#11 token. It is safe for concurrent use.
type Token struct {
	cfg  Config
	pin  string // held for re-login during recovery; never logged; guarded by mu
	mod  *module
	name string
	sem  chan struct{} // one slot per signing session

	state atomic.Pointer[tokenState]

	mu     sync.Mutex // guards keys, retired and state swaps
	keys   []*Key
	closed bool
	// retired are contexts replaced by refresh, closed a little later.
	retired []*crypto11.Context

	stats counters
	// degraded is set while the last signature that came back did not verify.
	degraded atomic.Pointer[degradation]
	// refreshing is set while refresh replaces a context with a dead session.
	refreshing atomic.Bool
	// refreshRefused stops background refreshes after one whose login the
	// token refused, until Relogin: a refused PIN is not tried again on our own.
	refreshRefused atomic.Pointer[error]
}

// tokenState is an immutable snapshot: a live crypto11 context and the signers
// found through it, or the reason there is none.
type tokenState struct {
	gen     uint64
	ctx     *crypto11.Context // nil while the token is down
	signers map[*Key]crypto11.Signer
	down    error // why ctx is nil
	// loginRefused is set when the token refused the PIN: recovery leaves the
	// token alone until Relogin.
	loginRefused error
}

type counters struct {
	signs, signErrors, busy, timeouts, recoveries, recoveryFailures atomic.Uint64
	retries, sigCheckFailures, loginRefusals, refreshes             atomic.Uint64
}

// Stats are cumulative counts since Open, for metrics.
type Stats struct {
	Signs, SignErrors, Busy, Timeouts, Recoveries, RecoveryFailures uint64
	// SignRetries counts signs tried a second time after a failed call;
	// SignatureCheckFailures, signatures that did not verify; LoginRefusals,
	// logins the token refused.
	SignRetries, SignatureCheckFailures, LoginRefusals uint64
	// Refreshes counts contexts replaced because one pooled session died.
	Refreshes              uint64
	Available              bool
	LoginRefused, Degraded bool
}

// Stats returns the token's counters.
func (t *Token) Stats() Stats {
	st := t.state.Load()
	return Stats{
		Signs:                  t.stats.signs.Load(),
		SignErrors:             t.stats.signErrors.Load(),
		Busy:                   t.stats.busy.Load(),
		Timeouts:               t.stats.timeouts.Load(),
		Recoveries:             t.stats.recoveries.Load(),
		RecoveryFailures:       t.stats.recoveryFailures.Load(),
		SignRetries:            t.stats.retries.Load(),
		SignatureCheckFailures: t.stats.sigCheckFailures.Load(),
		LoginRefusals:          t.stats.loginRefusals.Load(),
		Refreshes:              t.stats.refreshes.Load(),
		Available:              st.ctx != nil,
		LoginRefused:           st.loginRefused != nil,
		Degraded:               t.degraded.Load() != nil,
	}
}

// Open loads the module if needed, finds the token by label or serial, refuses a
// label that more than one token carries, and logs in.
func Open(cfg Config) (*Token, error) {
	cfg.setDefaults()
	t := &Token{cfg: cfg, name: cfg.tokenName()}
	if cfg.ModulePath == "" {
		return nil, t.err("open", "", nil, errors.New("no module path configured"))
	}
	if _, err := os.Stat(cfg.ModulePath); err != nil {
		return nil, t.err("open", "", nil, err)
	}
	if (cfg.TokenLabel == "") == (cfg.TokenSerial == "") {
		return nil, t.err("open", "", nil, errors.New("select the token by exactly one of label or serial"))
	}
	if cfg.MaxSessions < 2 {
		return nil, t.err("open", "", nil, fmt.Errorf("max_sessions is %d: it must be at least 2, one session to hold the login and one to sign", cfg.MaxSessions))
	}
	pin, err := cfg.PIN.Read()
	if err != nil {
		return nil, t.err("login", "", nil, err)
	}
	t.pin = pin
	// One session holds the login; the others sign.
	t.sem = make(chan struct{}, cfg.MaxSessions-1)
	t.mod = moduleFor(cfg.ModulePath)

	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	if err := t.checkUnique(); err != nil {
		return nil, err
	}
	ctx, err := t.configure()
	if err != nil {
		if pinRefused(err) {
			t.stats.loginRefusals.Add(1)
			return nil, t.err("log in", "", ErrLoginRefused, err)
		}
		return nil, err
	}
	t.state.Store(&tokenState{gen: 1, ctx: ctx, signers: map[*Key]crypto11.Signer{}})
	t.mod.tokens[t] = struct{}{}
	return t, nil
}

// Label returns the token's label, or its serial when it was opened by serial.
func (t *Token) Label() string { return t.name }

// ModulePath returns the PKCS#11 library the token is reached through.
func (t *Token) ModulePath() string { return t.cfg.ModulePath }

// Close logs out and releases the token's sessions. Keys found through it stop
// working. When it is the last open token of its module, the module is finalised.
func (t *Token) Close() error {
	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	st := t.state.Load()
	t.state.Store(&tokenState{gen: st.gen + 1, down: errors.New("token closed")})
	retired := t.retired
	t.retired = nil
	t.mu.Unlock()
	delete(t.mod.tokens, t)
	for _, ctx := range retired {
		closeWithin(ctx, t.cfg.SignTimeout+time.Second)
	}
	if st.ctx != nil {
		if !closeWithin(st.ctx, t.cfg.SignTimeout+time.Second) {
			return t.err("close", "", ErrUnavailable, errors.New("sessions still busy in the module; abandoned"))
		}
	}
	return nil
}

// configure opens a crypto11 context for the token and logs in, within OpTimeout.
// The caller holds t.mod.mu.
func (t *Token) configure() (*crypto11.Context, error) {
	t.mu.Lock()
	pin := t.pin
	t.mu.Unlock()
	c11 := &crypto11.Config{
		Path:        t.cfg.ModulePath,
		TokenLabel:  t.cfg.TokenLabel,
		TokenSerial: t.cfg.TokenSerial,
		Pin:         pin,
		// Every session counts against the token's limit: crypto11 keeps one
		// open to hold the login and pools MaxSessions-1 for signing. The pool
		// never waits, because t.sem admits no more signers than it has
		// sessions; the timeout is a second line of defence.
		MaxSessions:     t.cfg.MaxSessions,
		PoolWaitTimeout: t.cfg.SessionWait,
	}
	type result struct {
		ctx *crypto11.Context
		err error
	}
	done := make(chan result) // unbuffered: a late answer must see abandoned
	abandoned := make(chan struct{})
	go func() {
		ctx, err := crypto11.Configure(c11)
		select {
		case done <- result{ctx, err}:
		case <-abandoned:
			// The caller gave up on a module that answered late: release what
			// it opened, so that the module can still be finalised.
			if ctx != nil {
				ctx.Close()
			}
		}
	}()
	timer := time.NewTimer(t.cfg.OpTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, t.err("open and log in", "", nil, explainSessionCount(r.err, t.cfg.MaxSessions))
		}
		return r.ctx, nil
	case <-timer.C:
		close(abandoned)
		return nil, t.err("open and log in", "", ErrUnavailable, fmt.Errorf("module did not answer within %s", t.cfg.OpTimeout))
	}
}

// current returns the live state, or ErrUnavailable with the reason it is down.
func (t *Token) current(op string, key string) (*tokenState, error) {
	st := t.state.Load()
	if st.ctx == nil {
		if st.loginRefused == nil {
			// Someone is waiting for the token: recovery should not sleep long.
			t.mod.wanted()
		}
		return nil, t.err(op, key, ErrUnavailable, st.down)
	}
	return st, nil
}

// Check test-signs with every key found through the token and verifies each
// signature: the health check behind /health and `anvil hsm check`.
func (t *Token) Check(ctx context.Context) error {
	t.mu.Lock()
	keys := append([]*Key(nil), t.keys...)
	t.mu.Unlock()
	if _, err := t.current("check", ""); err != nil {
		return err
	}
	for _, k := range keys {
		if err := k.Check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// fail marks the token down because of cause, if the state that failed (gen) is
// still the current one, and starts recovery of its module.
func (t *Token) fail(gen uint64, cause error) {
	if t.markDown(gen, cause) {
		t.cfg.Logger.Warn("hsm token down; recovering", "module", t.cfg.ModulePath, "token", t.name, "cause", cause.Error())
		t.event(EventDown, "", cause)
		t.mod.startRecovery()
	}
}

// markDown swaps in a down state if gen is current, keeping the old context to
// close. It reports whether it changed anything.
func (t *Token) markDown(gen uint64, cause error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state.Load()
	if st.gen != gen || st.ctx == nil || t.closed {
		return false
	}
	t.state.Store(&tokenState{gen: st.gen + 1, down: cause})
	t.mod.addStale(st.ctx)
	return true
}

// reopen is one recovery attempt for this token, called with t.mod.mu held and
// every context of the module closed: open, log in, find each key again, check it
// is the same key, test-sign, and swap the new state in.
func (t *Token) reopen() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	keys := append([]*Key(nil), t.keys...)
	t.mu.Unlock()

	ctx, err := t.configure()
	if err != nil {
		return err
	}
	signers := make(map[*Key]crypto11.Signer, len(keys))
	for _, k := range keys {
		s, err := t.findPair(ctx, k.ref)
		if err == nil && samePublicKey(k.pub, s.Public()) != nil {
			err = fmt.Errorf("the key found under %s is not the key this process started with (its public key differs); refusing to use it", describeRef(k.ref))
		}
		if err == nil {
			err = within(t.cfg.OpTimeout, func() error { return CheckSigner(s, k.pub) })
		}
		if err != nil {
			closeWithin(ctx, t.cfg.SignTimeout+time.Second)
			return t.err("find again", k.ref.Label, nil, err)
		}
		signers[k] = s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		closeWithin(ctx, t.cfg.SignTimeout+time.Second)
		return nil
	}
	st := t.state.Load()
	t.state.Store(&tokenState{gen: st.gen + 1, ctx: ctx, signers: signers})
	return nil
}

// refresh replaces a working context whose pool holds a dead session (crypto11
// returns broken sessions to its pool) with a new one, without taking the
// token down: the same steps as recovery, then the old context is closed once
// no sign can still be about to use it. One refresh at a time; a failed one
// leaves the working context in place.
func (t *Token) refresh(gen uint64, cause error) {
	if t.refreshRefused.Load() != nil || !t.refreshing.CompareAndSwap(false, true) {
		return
	}
	defer t.refreshing.Store(false)
	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	st := t.state.Load()
	if st.gen != gen || st.ctx == nil {
		return // recovered or down meanwhile: nothing old to replace
	}
	if err := t.reopen(); err != nil {
		if pinRefused(err) {
			// The working context stays; no background login again until
			// the operator re-reads the PIN (SIGHUP), so as not to lock it.
			t.refreshRefused.Store(&err)
			t.stats.loginRefusals.Add(1)
			t.cfg.Logger.Error("hsm token refused the PIN when replacing a context with a dead session; keeping the old context, not logging in again until SIGHUP",
				"module", t.cfg.ModulePath, "token", t.name, "error", err.Error())
			t.event(EventLoginRefused, "", err)
			return
		}
		t.cfg.Logger.Warn("hsm could not replace a context with a dead session; keeping it", "module", t.cfg.ModulePath, "token", t.name, "error", err.Error())
		return
	}
	t.stats.refreshes.Add(1)
	t.cfg.Logger.Info("hsm replaced a context whose pool held a dead session", "module", t.cfg.ModulePath, "token", t.name, "cause", cause.Error())
	old := st.ctx
	t.mu.Lock()
	t.retired = append(t.retired, old)
	t.mu.Unlock()
	// A sign that read the old state may still be waiting for a session slot
	// (SessionWait) before it calls into the old context.
	time.AfterFunc(t.cfg.SessionWait+time.Second, func() {
		if t.takeRetired(old) {
			closeWithin(old, t.cfg.SignTimeout+time.Second)
		}
	})
}

// takeRetired removes ctx from the contexts waiting to be closed, and reports
// whether it was there (Close may have closed it already).
func (t *Token) takeRetired(ctx *crypto11.Context) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, c := range t.retired {
		if c == ctx {
			t.retired = append(t.retired[:i], t.retired[i+1:]...)
			return true
		}
	}
	return false
}

func (t *Token) err(op, key string, kind, cause error) error {
	return &Error{Op: op, Module: t.cfg.ModulePath, Token: t.name, Key: key, Kind: kind, Err: cause}
}

// within runs f and gives up waiting after d. A PKCS#11 call that never returns
// keeps its goroutine; the caller is free either way.
func within(d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("module did not answer within %s", d)
	}
}

// closeWithin closes a crypto11 context, which waits for its sessions to come
// back to the pool. It reports whether that happened within d.
func closeWithin(ctx *crypto11.Context, d time.Duration) bool {
	return within(d, ctx.Close) == nil
}
