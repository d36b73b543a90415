package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
)

type recordedEvents struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recordedEvents) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// A token event reaches the audit log under its audit name, with the token,
// the key and the reason; before the log is open it is dropped, not a panic.
func TestHSMEventsAreAudited(t *testing.T) {
	c := &core{}
	c.auditHSMEvent(hsm.Event{Token: "t", Kind: hsm.EventDown}) // no audit log yet

	rec := &recordedEvents{}
	c.audit = rec
	c.hsmAudit.Store(&c.audit)
	c.auditHSMEvent(hsm.Event{Token: "t", Key: "int-ecdsa", Kind: hsm.EventSignatureCheckFailed, Err: errors.New("bad")})
	c.auditHSMEvent(hsm.Event{Token: "t", Kind: hsm.EventLoginRefused, Err: errors.New("CKR_PIN_INCORRECT")})
	c.auditHSMEvent(hsm.Event{Token: "t", Kind: hsm.EventDown})
	c.auditHSMEvent(hsm.Event{Token: "t", Kind: hsm.EventRecovered})

	want := []string{audit.HSMSignatureBad, audit.HSMLoginRefused, audit.HSMTokenDown, audit.HSMTokenRecovered}
	if len(rec.evs) != len(want) {
		t.Fatalf("recorded %d events, want %d: %+v", len(rec.evs), len(want), rec.evs)
	}
	for i, w := range want {
		if rec.evs[i].Type != w || rec.evs[i].Data["token"] != "t" {
			t.Errorf("event %d = %+v, want type %s for token t", i, rec.evs[i], w)
		}
	}
	if rec.evs[0].Data["key"] != "int-ecdsa" || rec.evs[0].Data["error"] != "bad" {
		t.Errorf("signature check event lacks its key or reason: %+v", rec.evs[0])
	}
}

// Each ledger outcome reaches the audit log once the ledger holds it; one the
// ledger refuses is not claimed there.
func TestLedgerOutcomesAreAudited(t *testing.T) {
	ctx := context.Background()
	rec := &recordedEvents{}
	mem := issuancetest.NewMemoryLedger()
	l := auditedLedger{mem, rec, nil}
	for i, outcome := range []string{"issued", "not_signed", "abandoned"} {
		serial := big.NewInt(int64(100 + i))
		if err := l.RecordIntent(ctx, issuance.SerialReservation{Serial: serial, Issuer: "int-ecdsa", LintCert: []byte{1}}); err != nil {
			t.Fatal(err)
		}
		var err error
		switch outcome {
		case "issued":
			err = l.RecordIssued(ctx, serial, []byte{2})
		case "not_signed":
			err = l.RecordNotSigned(ctx, serial, issuance.NotSignedBadSignature)
		case "abandoned":
			err = l.RecordAbandoned(ctx, serial)
		}
		if err != nil {
			t.Fatalf("%s: %v", outcome, err)
		}
	}
	if err := l.RecordIssued(ctx, big.NewInt(999), []byte{2}); err == nil {
		t.Fatal("the ledger took an outcome for a serial it never reserved")
	}
	want := []string{"issued", "not_signed", "abandoned"}
	if len(rec.evs) != len(want) {
		t.Fatalf("audited %d outcomes, want %d: %+v", len(rec.evs), len(want), rec.evs)
	}
	for i, w := range want {
		ev := rec.evs[i]
		if ev.Type != audit.LedgerOutcome || ev.Data["outcome"] != w || ev.Data["serial"] != fmt.Sprintf("%x", 100+i) {
			t.Errorf("event %d = %+v, want ledger.outcome %s of serial %x", i, ev, w, 100+i)
		}
	}
	if rec.evs[1].Data["reason"] != issuance.NotSignedBadSignature {
		t.Errorf("not_signed event lacks its reason: %+v", rec.evs[1])
	}
}

type failingRecorder struct{}

func (failingRecorder) Record(context.Context, audit.Event) error {
	return errors.New("audit: write: no space left on device")
}

// An outcome the ledger holds is not undone by an audit log that fails: to
// issuance an error from RecordIssued means "not on record", and the order
// would be issued a second certificate.
func TestLedgerOutcomeStandsWhenTheAuditLogFails(t *testing.T) {
	ctx := context.Background()
	mem := issuancetest.NewMemoryLedger()
	l := auditedLedger{mem, failingRecorder{}, slog.New(slog.DiscardHandler)}
	serial := big.NewInt(7)
	if err := l.RecordIntent(ctx, issuance.SerialReservation{Serial: serial, Issuer: "int-ecdsa", LintCert: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordIssued(ctx, serial, []byte{2}); err != nil {
		t.Fatalf("RecordIssued = %v after the ledger recorded the certificate; issuance would abandon it and the order would be issued again", err)
	}
	if e, ok := mem.Entry(serial); !ok || e.Cert == nil {
		t.Fatal("the ledger does not hold the certificate")
	}
}
