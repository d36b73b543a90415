package main

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/hsm"
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
