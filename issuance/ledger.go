package issuance

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Ledger is the durable record of issuance. Issuance calls it three times, in
// this order, and stops at the first error:
//
//  1. ReserveSerial, before anything is built: a serial reserved before must be
//     refused (a unique constraint, not a hope);
//  2. RecordIntent, with the linted certificate, before the HSM signs;
//  3. RecordIssued, with the signed certificate, before it is returned.
//
// After a crash, a serial with an intent and no issued certificate is a
// signature that may exist; the lint certificate says exactly what it covered.
type Ledger interface {
	ReserveSerial(ctx context.Context, r SerialReservation) error
	RecordIntent(ctx context.Context, serial *big.Int, lintCertDER []byte) error
	RecordIssued(ctx context.Context, serial *big.Int, certDER []byte) error
}

// SerialReservation describes what a serial is reserved for.
type SerialReservation struct {
	Serial    *big.Int
	Issuer    string
	Profile   string
	Requester string // opaque to issuance, e.g. "acct/12 order/34"
	Created   time.Time
	Expires   time.Time // NotAfter of the certificate to be
}

// ErrDuplicateSerial is returned by ReserveSerial for a serial reserved before.
var ErrDuplicateSerial = errors.New("serial already reserved")

// MemoryLedger keeps the ledger in memory. It is for tests and benchmarks: a
// real CA needs the durable ledgers of package storage.
type MemoryLedger struct {
	mu      sync.Mutex
	entries map[string]*LedgerEntry
}

// LedgerEntry is one serial's record in a MemoryLedger.
type LedgerEntry struct {
	SerialReservation
	LintCert []byte
	Cert     []byte
}

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger { return &MemoryLedger{entries: map[string]*LedgerEntry{}} }

func (l *MemoryLedger) ReserveSerial(_ context.Context, r SerialReservation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := r.Serial.Text(16)
	if _, ok := l.entries[key]; ok {
		return fmt.Errorf("%w: %s", ErrDuplicateSerial, key)
	}
	l.entries[key] = &LedgerEntry{SerialReservation: r}
	return nil
}

func (l *MemoryLedger) RecordIntent(_ context.Context, serial *big.Int, lintCertDER []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[serial.Text(16)]
	if !ok {
		return fmt.Errorf("serial %x was never reserved", serial)
	}
	if e.LintCert != nil {
		return fmt.Errorf("serial %x already has an intent", serial)
	}
	e.LintCert = lintCertDER
	return nil
}

func (l *MemoryLedger) RecordIssued(_ context.Context, serial *big.Int, certDER []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[serial.Text(16)]
	if !ok || e.LintCert == nil {
		return fmt.Errorf("serial %x has no recorded intent", serial)
	}
	if e.Cert != nil {
		return fmt.Errorf("serial %x was already issued", serial)
	}
	e.Cert = certDER
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
