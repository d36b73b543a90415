package issuance

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Ledger is the durable record of issuance. Every row it holds ends in exactly
// one outcome. Issuance calls it in this order, and stops at the first error:
//
//  1. RecordIntent, after the certificate is built and linted and before the
//     HSM signs: the serial is reserved (a serial reserved before must be
//     refused: a unique constraint, not a hope) together with the lint
//     certificate, in one durable write, so a refusal or a lint failure writes
//     nothing at all;
//  2. then one outcome: RecordIssued, with the signed and verified
//     certificate, before it is returned; or RecordNotSigned when no valid
//     signature left the HSM (the call failed, or the signature did not
//     verify); or RecordAbandoned when a valid signature exists but
//     RecordIssued failed: the serial is then published as revoked.
//
// After a crash, an intent without an outcome is a signature that may exist;
// the lint certificate says exactly what it covered. Its owner closes it as
// abandoned (package storage) and publishes the serial as revoked.
type Ledger interface {
	RecordIntent(ctx context.Context, r SerialReservation) error
	RecordIssued(ctx context.Context, serial *big.Int, certDER []byte) error
	RecordNotSigned(ctx context.Context, serial *big.Int, reason string) error
	RecordAbandoned(ctx context.Context, serial *big.Int) error
}

// Reasons recorded with RecordNotSigned.
const (
	// NotSignedHSMError: the HSM call returned an error (a timeout included),
	// so no signature came back.
	NotSignedHSMError = "hsm_error"
	// NotSignedBadSignature: the signature that came back failed verification,
	// so no valid signature left the HSM.
	NotSignedBadSignature = "bad_signature"
)

// SerialReservation describes what a serial is reserved for, and the lint
// certificate that is the intent to sign it.
type SerialReservation struct {
	Serial    *big.Int
	Issuer    string
	Profile   string
	Requester string // opaque to issuance, e.g. "acct/12 order/34"
	Created   time.Time
	Expires   time.Time // NotAfter of the certificate to be
	LintCert  []byte    // DER; the bytes the HSM will be asked to sign, linted
}

// ErrDuplicateSerial is returned by RecordIntent for a serial reserved before.
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
	Cert      []byte
	NotSigned string // the reason, when not signed
	Abandoned bool
}

// NewMemoryLedger returns an empty MemoryLedger.
func NewMemoryLedger() *MemoryLedger { return &MemoryLedger{entries: map[string]*LedgerEntry{}} }

func (l *MemoryLedger) RecordIntent(_ context.Context, r SerialReservation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := r.Serial.Text(16)
	if _, ok := l.entries[key]; ok {
		return fmt.Errorf("%w: %s", ErrDuplicateSerial, key)
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
