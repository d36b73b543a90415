package acme_test

import (
	"context"
	"testing"

	"github.com/anvil-pki/anvil/acme"
)

// With the issuer's token known to be down, a finalize fails at once with a
// 503 serverInternal problem and a Retry-After, writes nothing to the ledger,
// and leaves the order ready to finalize again.
func TestFinalizeFailsFastWhenTokenDown(t *testing.T) {
	e := newEnv(t)
	o := e.readyOrder(t, "down.example.com")
	before, err := e.store.GetOrder(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.hsm.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "down.example.com"))
	p, ok := err.(*acme.Problem)
	if !ok || problemType(err) != "serverInternal" || p.Condition != acme.Unavailable || p.RetryAfter <= 0 {
		t.Fatalf("finalize with the token down: %v; want an Unavailable serverInternal problem with Retry-After", err)
	}
	certs, err := e.store.CertificatesForOrder(context.Background(), o.ID)
	if err != nil || len(certs) != 0 {
		t.Fatalf("ledger rows for the order: %d (%v); want none", len(certs), err)
	}
	after, err := e.store.GetOrder(context.Background(), o.ID)
	if err != nil || !after.UpdatedAt.Equal(before.UpdatedAt) || after.Status != before.Status {
		t.Fatalf("the order was written (%v, %v -> %v); a finalize for a token known to be down must write nothing", err, before.UpdatedAt, after.UpdatedAt)
	}
	got, err := e.ca.Order(context.Background(), e.acct, o.ID)
	if err != nil || got.Status != acme.StatusReady {
		t.Fatalf("order after the failed finalize: %v %v; want ready", got.Status, err)
	}
}
