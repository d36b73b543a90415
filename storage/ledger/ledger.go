// Package ledger keeps the issuance ledger in storage: it adapts a database
// to issuance.Ledger, the rows issuance writes before and after each
// signature (an intent, then the certificate, or why none was signed).
//
// It is its own package, not part of storage, so that storage keeps
// importing nothing of ours (no issuance, no hsm, no cgo for its users);
// and not part of cmd/anvil, because the tests of acme, revocation and
// signer issue into a real store through it. It never decides anything:
// issuance decides what to record, storage how.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// Store is what the ledger needs of storage. storage.Store satisfies it.
type Store interface {
	ReserveSerial(ctx context.Context, c *storage.Certificate) error
	RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error
	AbandonIntent(ctx context.Context, serial string, at time.Time) error
	RecordNotSigned(ctx context.Context, serial, reason string) error
}

var _ Store = storage.Store(nil)

// Issuance adapts a Store to issuance.Ledger. The requester of an issuance
// is the ID of the order it is for. Holder names this node in the rows it
// writes, so that a sweep can tell a dead node's open intents from a live
// one's.
type Issuance struct {
	Store  Store
	Holder string
}

var _ issuance.Ledger = Issuance{}

func (l Issuance) RecordIntent(ctx context.Context, r issuance.SerialReservation) error {
	err := l.Store.ReserveSerial(ctx, &storage.Certificate{
		Serial: fmt.Sprintf("%x", r.Serial), Issuer: r.Issuer, Profile: r.Profile,
		OrderID: r.Requester, CreatedAt: r.Created, Expires: r.Expires,
		LintDER: r.LintCert, Holder: l.Holder, CRLShard: r.CRLShard,
	})
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("%w: %w", issuance.ErrDuplicateSerial, err)
	}
	return err
}

func (l Issuance) RecordIssued(ctx context.Context, serial *big.Int, der []byte) error {
	return l.Store.RecordIssuedCertificate(ctx, fmt.Sprintf("%x", serial), der)
}

func (l Issuance) RecordAbandoned(ctx context.Context, serial *big.Int) error {
	return l.Store.AbandonIntent(ctx, fmt.Sprintf("%x", serial), time.Now())
}

func (l Issuance) RecordNotSigned(ctx context.Context, serial *big.Int, reason string) error {
	return l.Store.RecordNotSigned(ctx, fmt.Sprintf("%x", serial), reason)
}
