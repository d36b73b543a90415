package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/audit"
)

// recorder keeps events, or refuses them once fail is set, as an audit log
// whose disk is full would.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   atomic.Bool
}

func (r *recorder) Record(_ context.Context, ev audit.Event) error {
	if r.fail.Load() {
		return errors.New("disk full")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

// Each step of an issuance is recorded by the time the call returns.
func TestAuditEventsOfAnIssuance(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(c *acme.Config) { c.Audit = rec })
	o := e.readyOrder(t, "audit.example.com")
	done, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "audit.example.com"))
	if err != nil || done.Status != acme.StatusValid {
		t.Fatalf("finalize: %v %v", done, err)
	}
	want := []string{audit.AccountCreated, audit.AuthzValid, audit.CertIssued, audit.OrderFinalized}
	if got := rec.types(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	issued := rec.events[2].Data
	if issued["serial"] != done.CertSerial || issued["account"] != e.acct.ID || issued["order"] != o.ID || len(issued["sha256"].(string)) != 64 {
		t.Fatalf("certificate.issued %v", issued)
	}
}

// No response goes out for an event the audit log could not take.
func TestAuditFailureFailsTheRequest(t *testing.T) {
	rec := &recorder{}
	e := newEnv(t, func(c *acme.Config) { c.Audit = rec })
	rec.fail.Store(true)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, _, err := e.ca.NewAccount(context.Background(), &jose.JSONWebKey{Key: priv.Public()}, acme.NewAccountRequest{TermsOfServiceAgreed: true}, "127.0.0.1", "")
	if problemType(err) != "serverInternal" {
		t.Fatalf("new account with a failing audit log: %v", err)
	}
	if _, err := e.ca.UpdateAccount(context.Background(), e.acct, acme.UpdateAccountRequest{Status: acme.StatusDeactivated}); problemType(err) != "serverInternal" {
		t.Fatalf("deactivation with a failing audit log: %v", err)
	}
}
