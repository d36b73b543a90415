package revocation_test

import (
	"context"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/revocation"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

// Each CRL published is recorded with its issuer, number and entries.
func TestCRLPublishedIsAudited(t *testing.T) {
	rec := &recorder{}
	e := newEnvConfig(t, 2, func(c *revocation.Config) { c.Audit = rec })
	ctx := context.Background()
	e.pub.RefreshNow(ctx)
	e.revoke(t, e.certs[1], 1)
	e.pub.RefreshNow(ctx)
	crl := e.fetchCRL(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 2 {
		t.Fatalf("%d events, want 2 (one per CRL)", len(rec.events))
	}
	last := rec.events[1]
	if last.Type != audit.CRLPublished || last.Data["issuer"] != e.iss.Name() || last.Data["number"] != crl.Number.String() || last.Data["entries"] != 1 {
		t.Fatalf("event %+v; CRL number %s", last, crl.Number)
	}
}
