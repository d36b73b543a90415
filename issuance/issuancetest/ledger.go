package issuancetest

import (
	"context"
	"fmt"
	"math/big"
	"sync"

	"github.com/anvil-pki/anvil/issuance"
)

// MemoryLedger keeps an issuance.Ledger in memory, for tests and benchmarks
// of issuance alone: a real CA needs the durable ledger of package storage
// (storage/ledger).
type MemoryLedger struct {
	mu      sync.Mutex
	entries map[string]*LedgerEntry
}

// LedgerEntry is one serial's record in a MemoryLedger.
type LedgerEntry struct {
	issuance.SerialReservation
	Cert      []byte
	NotSigned string // the reason, when not signed
	Abandoned bool
}

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger { return &MemoryLedger{entries: map[string]*LedgerEntry{}} }

func (l *MemoryLedger) RecordIntent(_ context.Context, r issuance.SerialReservation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := r.Serial.Text(16)
	if _, ok := l.entries[key]; ok {
		return fmt.Errorf("%w: %s", issuance.ErrDuplicateSerial, key)
	}
	if len(r.LintCert) == 0 {
		return fmt.Errorf("serial %s: no lint certificate", key)
	}
	l.entries[key] = &LedgerEntry{SerialReservation: r}
	return nil
}

// open returns the entry of serial if it has no outcome yet.
func (l *MemoryLedger) open(serial *big.Int) (*LedgerEntry, error) {
	e, ok := l.entries[serial.Text(16)]
	if !ok {
		return nil, fmt.Errorf("serial %x has no recorded intent", serial)
	}
	if e.Cert != nil || e.NotSigned != "" || e.Abandoned {
		return nil, fmt.Errorf("serial %x already has an outcome", serial)
	}
	return e, nil
}

func (l *MemoryLedger) RecordIssued(_ context.Context, serial *big.Int, certDER []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := l.open(serial)
	if err != nil {
		return err
	}
	e.Cert = certDER
	return nil
}

func (l *MemoryLedger) RecordNotSigned(_ context.Context, serial *big.Int, reason string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := l.open(serial)
	if err != nil {
		return err
	}
	e.NotSigned = reason
	return nil
}

func (l *MemoryLedger) RecordAbandoned(_ context.Context, serial *big.Int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := l.open(serial)
	if err != nil {
		return err
	}
	e.Abandoned = true
	return nil
}

// Entry returns a copy of the record for serial.
func (l *MemoryLedger) Entry(serial *big.Int) (LedgerEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[serial.Text(16)]
	if !ok {
		return LedgerEntry{}, false
	}
	return *e, true
}

// Len returns the number of reserved serials.
func (l *MemoryLedger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
