package issuance

import (
	"context"
	"errors"
	"math/big"
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
	// CRLShard is the issuer's CRL shard the certificate's CRL distribution
	// point names: stored with the serial, since it never changes.
	CRLShard int
}

// ErrDuplicateSerial is returned by RecordIntent for a serial reserved before.
var ErrDuplicateSerial = errors.New("serial already reserved")
