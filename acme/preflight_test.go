package acme_test

import (
	"context"
	"errors"
	"testing"

	"github.com/anvil-pki/anvil/acme"
)

// Finalize compares the CSR's names with the order's as issuance does:
// without regard to case or repeats, and a name more or less is a badCSR that
// leaves the order ready.
func TestFinalizeComparesNames(t *testing.T) {
	e := newEnv(t)
	o := e.readyOrder(t, "a.example.com", "b.example.com")
	_, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "a.example.com", "b.example.com", "c.example.com"))
	var p *acme.Problem
	if !errors.As(err, &p) || problemType(err) != "badCSR" ||
		p.Detail != "the CSR names dns:a.example.com, dns:b.example.com, dns:c.example.com but the order is for dns:a.example.com, dns:b.example.com" {
		t.Fatalf("CSR with an extra name: %v", err)
	}
	if got, err := e.ca.Order(context.Background(), e.acct, o.ID); err != nil || got.Status != acme.StatusReady {
		t.Fatalf("order after a refused CSR: %v, %v; want ready", got, err)
	}
	done, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "B.Example.com", "a.example.com", "A.EXAMPLE.COM"))
	if err != nil || done.Status != acme.StatusValid {
		t.Fatalf("CSR with the same names in other case and order, one repeated: %v", err)
	}
}
