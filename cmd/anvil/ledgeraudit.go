package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/issuance"
)

// auditedLedger writes each ledger outcome to the audit log after the ledger
// has it: the database is the record of what was signed, the audit log the
// tamper-evident account of it. The intent itself is not an event: its
// outcome always follows, or the row is abandoned and that is audited.
//
// A failure to audit an outcome the ledger already holds is logged, never
// returned: to issuance an error from RecordIssued means "this signature is
// not on record", and the order would be issued again. The request still
// fails closed, because finalize audits the certificate itself before it
// answers, and a broken audit log refuses that too.
type auditedLedger struct {
	issuance.Ledger
	audit audit.Recorder
	log   *slog.Logger
}

func (l auditedLedger) RecordIssued(ctx context.Context, serial *big.Int, der []byte) error {
	if err := l.Ledger.RecordIssued(ctx, serial, der); err != nil {
		return err
	}
	l.outcome(ctx, serial, "issued", "")
	return nil
}

func (l auditedLedger) RecordNotSigned(ctx context.Context, serial *big.Int, reason string) error {
	if err := l.Ledger.RecordNotSigned(ctx, serial, reason); err != nil {
		return err
	}
	l.outcome(ctx, serial, "not_signed", reason)
	return nil
}

func (l auditedLedger) RecordAbandoned(ctx context.Context, serial *big.Int) error {
	if err := l.Ledger.RecordAbandoned(ctx, serial); err != nil {
		return err
	}
	l.outcome(ctx, serial, "abandoned", "a signature that exists was not recorded")
	return nil
}

func (l auditedLedger) outcome(ctx context.Context, serial *big.Int, outcome, reason string) {
	data := map[string]any{"serial": fmt.Sprintf("%x", serial), "outcome": outcome}
	if reason != "" {
		data["reason"] = reason
	}
	if err := l.audit.Record(ctx, audit.Event{Type: audit.LedgerOutcome, Data: data}); err != nil && l.log != nil {
		l.log.Error("audit: a ledger outcome is in the database but not in the audit log",
			"serial", data["serial"], "outcome", outcome, "error", err)
	}
}

// auditAbandoned records intents closed as abandoned in bulk (at start, or by
// the sweep of dead nodes' intents), whose serials are now published revoked.
func (c *core) auditAbandoned(ctx context.Context, n int64, scope string) {
	if n == 0 || c.audit == nil {
		return
	}
	if err := c.audit.Record(ctx, audit.Event{Type: audit.LedgerOutcome, Data: map[string]any{
		"outcome": "abandoned", "count": n, "scope": scope,
		"reason": "the process ended between intent and outcome: the serials are published as revoked (cessationOfOperation)",
	}}); err != nil {
		c.log.Error("audit: abandoned intents not recorded", "count", n, "error", err)
	}
}
