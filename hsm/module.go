package hsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// module is one PKCS#11 library as this process uses it. crypto11 initialises a
// library once per path and finalises it when its last Context closes; a library
// that lost its token keeps stale state until then. So recovery works on the whole
// module: close every context (which finalises it), then reopen every token.
type module struct {
	path string

	mu         sync.Mutex // serialises open, find, close and recovery on this module
	tokens     map[*Token]struct{}
	recovering bool
	// wake tells the recovery loop that a call was refused because a token is
	// down, so that its next attempt comes within MaxBackoffWhileWaiting.
	wake chan struct{}

	// stale holds contexts of tokens marked down, still to be closed. A signer
	// may mark its token down while recovery holds mu, so stale has its own lock.
	staleMu sync.Mutex
	stale   []*crypto11.Context
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

func moduleFor(path string) *module {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m, ok := modules[path]
	if !ok {
		m = &module{path: path, tokens: map[*Token]struct{}{}, wake: make(chan struct{}, 1)}
		modules[path] = m
	}
	return m
}

// addStale queues a context for closing by the recovery loop.
func (m *module) addStale(ctx *crypto11.Context) {
	m.staleMu.Lock()
	m.stale = append(m.stale, ctx)
	m.staleMu.Unlock()
}

func (m *module) takeStale() []*crypto11.Context {
	m.staleMu.Lock()
	defer m.staleMu.Unlock()
	s := m.stale
	m.stale = nil
	return s
}

// wanted notes that a caller is waiting for a token of this module.
func (m *module) wanted() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// pause waits backoff before the next recovery attempt, or at most
// MaxBackoffWhileWaiting after its start when a caller is waiting: a long
// backoff spares an HSM nobody needs, not one that requests are waiting for.
func (m *module) pause(backoff time.Duration) {
	start := time.Now()
	deadline := start.Add(backoff)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
			return
		case <-m.wake:
			timer.Stop()
			deadline = start.Add(min(backoff, MaxBackoffWhileWaiting))
		}
	}
}

// startRecovery starts the recovery loop unless one is running.
func (m *module) startRecovery() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recovering {
		return
	}
	m.recovering = true
	go m.recoverLoop()
}

func (m *module) recoverLoop() {
	var backoff, maxBackoff time.Duration
	logger := slog.Default()
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		if len(m.tokens) == 0 {
			m.closeStale(time.Second)
			m.recovering = false
			m.mu.Unlock()
			return
		}
		// Take every token down, so that the module can be finalised.
		var timeout time.Duration
		for t := range m.tokens {
			if backoff == 0 {
				backoff, maxBackoff = t.cfg.MinBackoff, t.cfg.MaxBackoff
				logger = t.cfg.Logger
			}
			timeout = max(timeout, t.cfg.SignTimeout+time.Second)
			t.markDown(t.state.Load().gen, errors.New("recovering the module"))
		}
		abandoned := m.closeStale(timeout)
		var failed []error
		for t := range m.tokens {
			if st := t.state.Load(); st.ctx != nil || st.loginRefused != nil {
				// A token that refused the PIN waits for the operator (Relogin).
				continue
			}
			if refused := t.refreshRefused.Load(); refused != nil {
				// It refused this PIN at a background refresh already.
				t.noteRefused(*refused)
				continue
			}
			if err := t.reopen(); err != nil {
				t.stats.recoveryFailures.Add(1)
				if t.noteRefused(err) != nil {
					continue
				}
				failed = append(failed, err)
				// Keep the reason visible to callers of Sign.
				t.mu.Lock()
				st := t.state.Load()
				if st.ctx == nil && !t.closed {
					t.state.Store(&tokenState{gen: st.gen, down: err})
				}
				t.mu.Unlock()
			} else {
				t.stats.recoveries.Add(1)
				t.cfg.Logger.Info("hsm token recovered", "module", m.path, "token", t.name, "attempt", attempt)
				t.event(EventRecovered, "", nil)
			}
		}
		if len(failed) == 0 {
			m.recovering = false
			m.mu.Unlock()
			logger.Info("hsm module recovered", "module", m.path, "attempt", attempt)
			return
		}
		m.mu.Unlock()
		logger.Warn("hsm recovery attempt failed", "module", m.path, "attempt", attempt,
			"abandoned_contexts", abandoned, "error", errors.Join(failed...).Error(), "retry_in", backoff.String())
		m.pause(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

// closeStale closes the queued contexts and reports how many did not close in time.
func (m *module) closeStale(d time.Duration) int {
	abandoned := 0
	for _, ctx := range m.takeStale() {
		if !closeWithin(ctx, d) {
			abandoned++
		}
	}
	return abandoned
}

// withRaw runs f on a raw miekg/pkcs11 handle to the module, for the few things
// crypto11 does not expose (slot and token listing, searching objects of any class).
// If crypto11 has already initialised the library, the raw handle shares that
// initialisation (and its login) and must not finalise it. Callers hold m.mu.
func (m *module) withRaw(f func(p *pkcs11.Ctx) error) error {
	p := pkcs11.New(m.path)
	if p == nil {
		return fmt.Errorf("cannot load PKCS#11 module %s", m.path)
	}
	defer p.Destroy()
	ours := true
	if err := p.Initialize(); err != nil {
		if code, ok := ReturnCode(err); !ok || code != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			return fmt.Errorf("initialize: %w", err)
		}
		ours = false
	}
	if ours {
		defer p.Finalize()
	}
	return f(p)
}

// TokenInfo describes one token in a slot.
type TokenInfo struct {
	Slot         uint
	Label        string
	Serial       string
	Manufacturer string
	Model        string
	Initialized  bool
	LoginNeeded  bool
}

// ListTokens lists the tokens a module shows, for `anvil hsm tokens`.
func ListTokens(modulePath string) ([]TokenInfo, error) {
	m := moduleFor(modulePath)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []TokenInfo
	err := m.withRaw(func(p *pkcs11.Ctx) error {
		var err error
		out, err = listTokens(p)
		return err
	})
	if err != nil {
		return nil, &Error{Op: "list tokens", Module: modulePath, Err: err}
	}
	return out, nil
}

func listTokens(p *pkcs11.Ctx) ([]TokenInfo, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("get slot list: %w", err)
	}
	var out []TokenInfo
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return nil, fmt.Errorf("get token info of slot %d: %w", s, err)
		}
		out = append(out, TokenInfo{
			Slot:         s,
			Label:        trimPadded(ti.Label),
			Serial:       trimPadded(ti.SerialNumber),
			Manufacturer: trimPadded(ti.ManufacturerID),
			Model:        trimPadded(ti.Model),
			Initialized:  ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0,
			LoginNeeded:  ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0,
		})
	}
	return out, nil
}

// checkUnique refuses to open a token whose label (or serial) more than one token
// carries: crypto11 would silently take the first. Callers hold t.mod.mu.
func (t *Token) checkUnique() error {
	return t.mod.withRaw(func(p *pkcs11.Ctx) error {
		tokens, err := listTokens(p)
		if err != nil {
			return t.err("open", "", nil, err)
		}
		var slots []uint
		for _, ti := range tokens {
			if (t.cfg.TokenLabel != "" && ti.Label == t.cfg.TokenLabel) ||
				(t.cfg.TokenSerial != "" && ti.Serial == t.cfg.TokenSerial) {
				slots = append(slots, ti.Slot)
			}
		}
		switch {
		case len(slots) == 0:
			return t.err("open", "", ErrNotFound, errors.New("no such token in any slot"))
		case len(slots) > 1:
			return t.err("open", "", ErrAmbiguous, fmt.Errorf("%d tokens carry this name (slots %v): refusing to guess", len(slots), slots))
		}
		return nil
	})
}

func trimPadded(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}
