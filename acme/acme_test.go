package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/policy"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// fakeValidator stands in for network validation in these unit tests (the e2e
// tests validate for real): it answers from a script per identifier.
type fakeValidator struct {
	mu      sync.Mutex
	results map[string][]error // identifier value -> errors to return in turn; nil = success
	calls   atomic.Int32
	onCAA   func() // run during each CAA check, to change the world meanwhile
}

func (f *fakeValidator) Validate(_ context.Context, id acme.Identifier, _, _, _ string) error {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := f.results[id.Value]
	if len(rs) == 0 {
		return nil
	}
	f.results[id.Value] = rs[1:]
	return rs[0]
}

func (f *fakeValidator) CheckCAA(context.Context, string, bool, string, string) error {
	if f.onCAA != nil {
		f.onCAA()
	}
	return nil
}

type env struct {
	ca    *acme.Core
	store storage.Store
	val   *fakeValidator
	acct  *storage.Account
	key   *jose.JSONWebKey
	hsm   *hsm.Token
}

func newEnv(t *testing.T, mutate ...func(*acme.Config)) *env {
	t.Helper()
	return newEnvIssuer(t, func(i acme.Issuer) acme.Issuer { return i }, mutate...)
}

// newEnvIssuer is newEnv with the issuer wrapped, to make it misbehave.
func newEnvIssuer(t *testing.T, wrap func(acme.Issuer) acme.Issuer, mutate ...func(*acme.Config)) *env {
	t.Helper()
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	rules, _ := policy.New(policy.Config{AllowedIPRanges: []string{"192.0.2.0/24"}, AllowSpecialUse: []string{"example.com", "example"}})
	profile := issuancetest.Profile(t, "tls", issuance.ProfileConfig{IgnoredLints: []string{"e_ext_san_contains_reserved_ip"}})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{iss}, Profiles: []*issuance.Profile{profile},
		Ledger: ledger.Issuance{Store: store}, Policy: rules, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	val := &fakeValidator{results: map[string][]error{}}
	cfg := acme.Config{Policy: rules, InlineValidation: 5 * time.Second, RetryBackoff: 10 * time.Millisecond, Logger: quiet}
	for _, m := range mutate {
		m(&cfg)
	}
	ca, err := acme.New(cfg, store, wrap(acme.LocalIssuer{Service: svc}), val)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Wait)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := &jose.JSONWebKey{Key: priv.Public()}
	acct, created, err := ca.NewAccount(context.Background(), key, acme.NewAccountRequest{TermsOfServiceAgreed: true}, "127.0.0.1", "")
	if err != nil || !created {
		t.Fatalf("new account: %v %v", created, err)
	}
	return &env{ca: ca, store: store, val: val, acct: acct, key: key, hsm: tok}
}

func (e *env) readyOrder(t *testing.T, names ...string) *storage.Order {
	t.Helper()
	var ids []acme.Identifier
	for _, n := range names {
		ids = append(ids, acme.Identifier{Type: "dns", Value: n})
	}
	o, err := e.ca.NewOrder(context.Background(), e.acct, acme.NewOrderRequest{Identifiers: ids})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range o.AuthzIDs {
		a, err := e.ca.Authorization(context.Background(), e.acct, id)
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := e.ca.RespondChallenge(context.Background(), e.acct, a.Challenges[0].ID)
		if err != nil || ch.Status != acme.StatusValid {
			t.Fatalf("challenge: %v %v", ch, err)
		}
	}
	o, err = e.ca.Order(context.Background(), e.acct, o.ID)
	if err != nil || o.Status != acme.StatusReady {
		t.Fatalf("order not ready: %v %v", o, err)
	}
	return o
}

func csrFor(t *testing.T, names ...string) []byte {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func problemType(err error) string {
	var p *acme.Problem
	if errors.As(err, &p) {
		return strings.TrimPrefix(p.Type, acme.ProblemNS)
	}
	return "not a problem: " + errString(err)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Twenty concurrent finalizes of one order make exactly one certificate; the
// others get orderNotReady, and the ledger holds one certificate for the order.
func TestConcurrentFinalizeIssuesOnce(t *testing.T) {
	e := newEnv(t)
	o := e.readyOrder(t, "race.example.com")
	csr := csrFor(t, "race.example.com")
	before := e.hsm.Stats().Signs
	var wg sync.WaitGroup
	var valid, notReady atomic.Int32
	var other sync.Map
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csr)
			switch {
			case err == nil && got.Status == acme.StatusValid:
				valid.Add(1)
			case problemType(err) == "orderNotReady":
				notReady.Add(1)
			default:
				other.Store(errString(err), true)
			}
		}()
	}
	wg.Wait()
	other.Range(func(k, _ any) bool { t.Errorf("unexpected outcome: %v", k); return true })
	if valid.Load() != 1 || notReady.Load() != 19 {
		t.Fatalf("%d valid, %d orderNotReady; want 1 and 19", valid.Load(), notReady.Load())
	}
	certs, err := e.store.CertificatesForOrder(context.Background(), o.ID)
	if err != nil || len(certs) != 1 || certs[0].DER == nil {
		t.Fatalf("ledger for the order: %d entries, %v", len(certs), err)
	}
	if n := e.hsm.Stats().Signs - before; n != 1 {
		t.Fatalf("the HSM signed %d times for one order", n)
	}
}

// A retryable validation failure is retried in the background; the challenge
// stays processing meanwhile and ends valid.
func TestValidationRetried(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.InlineValidation = 0 })
	e.val.results["retry.example.com"] = []error{&acme.ValidationError{Type: "connection", Detail: "refused"}}
	o, err := e.ca.NewOrder(context.Background(), e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "retry.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.ca.Authorization(context.Background(), e.acct, o.AuthzIDs[0])
	ch, _, err := e.ca.RespondChallenge(context.Background(), e.acct, a.Challenges[0].ID)
	if err != nil || ch.Status != acme.StatusProcessing {
		t.Fatalf("respond: %v %v", ch, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.ca.Run(ctx, 20*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, _, err = e.ca.Challenge(context.Background(), e.acct, a.Challenges[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Status == acme.StatusValid {
			break
		}
		if ch.Status != acme.StatusProcessing || time.Now().After(deadline) {
			t.Fatalf("challenge %s after the retry (attempts %d)", ch.Status, ch.Attempts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ch.Attempts != 2 || e.val.calls.Load() != 2 {
		t.Fatalf("attempts %d, validator calls %d; want 2 and 2", ch.Attempts, e.val.calls.Load())
	}
}

// A failure that is not retryable makes the challenge, the authorization and
// then the order invalid at once, with the error on the challenge.
func TestValidationFailureInvalidatesOrder(t *testing.T) {
	e := newEnv(t)
	e.val.results["bad.example.com"] = []error{&acme.ValidationError{Type: "incorrectResponse", Detail: "wrong key authorization"}}
	o, _ := e.ca.NewOrder(context.Background(), e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "bad.example.com"}}})
	a, _ := e.ca.Authorization(context.Background(), e.acct, o.AuthzIDs[0])
	ch, authz, err := e.ca.RespondChallenge(context.Background(), e.acct, a.Challenges[0].ID)
	if err != nil || ch.Status != acme.StatusInvalid || authz.Status != acme.StatusInvalid || !strings.Contains(string(ch.Error), "incorrectResponse") {
		t.Fatalf("challenge %v authz %v err %v", ch, authz, err)
	}
	o, _ = e.ca.Order(context.Background(), e.acct, o.ID)
	if o.Status != acme.StatusInvalid {
		t.Fatalf("order %s, want invalid", o.Status)
	}
	if _, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "bad.example.com")); problemType(err) != "orderNotReady" {
		t.Fatalf("finalize of an invalid order: %v", err)
	}
}

func TestNewOrderPolicyAndChallenges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	o, err := e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{
		{Type: "dns", Value: "*.Wild.example.com"}, {Type: "ip", Value: "192.0.2.7"}, {Type: "dns", Value: "plain.example.com"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	as, _ := e.ca.Authorizations(ctx, o.AuthzIDs)
	types := map[string][]string{}
	for _, a := range as {
		for _, c := range a.Challenges {
			types[a.Identifier.Value] = append(types[a.Identifier.Value], c.Type)
		}
		if a.Identifier.Value == "wild.example.com" && !a.Wildcard {
			t.Error("wildcard authorization not marked wildcard")
		}
	}
	if strings.Join(types["wild.example.com"], ",") != "dns-01" {
		t.Errorf("wildcard challenges %v, want dns-01 only", types["wild.example.com"])
	}
	if strings.Join(types["192.0.2.7"], ",") != "http-01,tls-alpn-01" {
		t.Errorf("IP challenges %v, want http-01 and tls-alpn-01", types["192.0.2.7"])
	}
	if len(types["plain.example.com"]) != 3 {
		t.Errorf("DNS name challenges %v, want all three", types["plain.example.com"])
	}
	for _, c := range []struct {
		ids  []acme.Identifier
		want string
	}{
		{nil, "malformed"},
		{[]acme.Identifier{{Type: "email", Value: "a@b.c"}}, "unsupportedIdentifier"},
		{[]acme.Identifier{{Type: "dns", Value: "bad_name.example.com"}}, "rejectedIdentifier"},
		{[]acme.Identifier{{Type: "ip", Value: "10.0.0.1"}}, "rejectedIdentifier"},
		{[]acme.Identifier{{Type: "dns", Value: "a..b"}, {Type: "dns", Value: "-c.com"}}, "rejectedIdentifier"},
	} {
		_, err := e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: c.ids})
		if problemType(err) != c.want {
			t.Errorf("%v: got %v, want %s", c.ids, err, c.want)
		}
	}
	_, err = e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "a..b"}, {Type: "dns", Value: "-c.com"}}})
	var p *acme.Problem
	if !errors.As(err, &p) || len(p.Subproblems) != 2 {
		t.Fatalf("two refused identifiers: %+v", p)
	}
}

func TestAccounts(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.TermsOfService = "https://ca.example/terms" })
	ctx := context.Background()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := &jose.JSONWebKey{Key: priv.Public()}
	if _, _, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{}, "", ""); problemType(err) != "malformed" {
		t.Fatalf("without agreeing to the terms: %v", err)
	}
	if _, _, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{OnlyReturnExisting: true}, "", ""); problemType(err) != "accountDoesNotExist" {
		t.Fatalf("onlyReturnExisting: %v", err)
	}
	for contact, want := range map[string]string{
		"tel:+12025551212":             "unsupportedContact",
		"mailto:not an address":        "invalidContact",
		"mailto:a@b.example,c@d.test":  "invalidContact",
		"mailto:a@b.example?subject=x": "invalidContact",
		"mailto:a@bad_domain":          "invalidContact",
	} {
		_, _, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{TermsOfServiceAgreed: true, Contact: []string{contact}}, "", "")
		if problemType(err) != want {
			t.Errorf("contact %q: got %v, want %s", contact, err, want)
		}
	}
	acct, created, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{TermsOfServiceAgreed: true, Contact: []string{"mailto:pki@example.com"}}, "", "")
	if err != nil || !created {
		t.Fatal(err)
	}
	again, created, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{TermsOfServiceAgreed: true}, "", "")
	if err != nil || created || again.ID != acct.ID {
		t.Fatalf("same key again: %v created=%v", err, created)
	}
	if _, err := e.ca.UpdateAccount(ctx, acct, acme.UpdateAccountRequest{Status: acme.StatusDeactivated}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ca.Account(ctx, acct.ID); problemType(err) != "unauthorized" {
		t.Fatalf("deactivated account used: %v", err)
	}
	if _, _, err := e.ca.NewAccount(ctx, key, acme.NewAccountRequest{TermsOfServiceAgreed: true}, "", ""); problemType(err) != "unauthorized" {
		t.Fatalf("newAccount with a deactivated account's key: %v", err)
	}
}

// lostAnswer is a remote signer whose first answer never arrives: it issues,
// and the caller hears only that the outcome is unknown.
type lostAnswer struct {
	acme.Issuer
	calls atomic.Int32
}

func (l *lostAnswer) Issue(ctx context.Context, req issuance.Request) (*issuance.Issued, error) {
	issued, err := l.Issuer.Issue(ctx, req)
	if l.calls.Add(1) == 1 {
		return nil, fmt.Errorf("%w: connection reset", issuance.ErrOutcomeUnknown)
	}
	return issued, err
}

// A finalize whose answer is lost keeps the order processing with its CSR,
// and the sweep completes it with the certificate that was made: one
// signature, and the certificate for the CSR the client sent.
func TestFinalizeWithUnknownOutcomeAdoptsTheCertificate(t *testing.T) {
	lost := &lostAnswer{}
	e := newEnvIssuer(t, func(i acme.Issuer) acme.Issuer { lost.Issuer = i; return lost })
	o := e.readyOrder(t, "lost.example.com")
	csr := csrFor(t, "lost.example.com")
	before := e.hsm.Stats().Signs
	got, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csr)
	if err != nil || got.Status != acme.StatusProcessing {
		t.Fatalf("finalize with a lost answer: %v, %v; want the order processing", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.ca.Run(ctx, 20*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err = e.ca.Order(context.Background(), e.acct, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != acme.StatusProcessing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the order is still processing after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o.Status != acme.StatusValid {
		t.Fatalf("order ended %s, want valid", o.Status)
	}
	cert, err := e.store.GetCertificate(context.Background(), o.CertSerial)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.DER)
	req, _ := x509.ParseCertificateRequest(csr)
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, req.RawSubjectPublicKeyInfo) {
		t.Fatal("the order's certificate is not for the CSR's key")
	}
	if n := e.hsm.Stats().Signs - before; n != 1 {
		t.Fatalf("the HSM signed %d times for one order, want 1", n)
	}
}

// An authorization deactivated while finalize rechecks CAA (DNS lookups take
// seconds) stops the finalize: nothing is signed for a name its holder gave up.
func TestFinalizeRecheckSeesADeactivatedAuthorization(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.CAA, c.CAARecheckAfter = true, time.Nanosecond })
	o := e.readyOrder(t, "gone.example.com")
	e.val.onCAA = func() {
		e.val.onCAA = nil
		if _, err := e.ca.DeactivateAuthorization(context.Background(), e.acct, o.AuthzIDs[0]); err != nil {
			t.Errorf("deactivate: %v", err)
		}
	}
	before := e.hsm.Stats().Signs
	_, err := e.ca.Finalize(context.Background(), e.acct, e.key, o.ID, csrFor(t, "gone.example.com"))
	if problemType(err) != "orderNotReady" {
		t.Fatalf("finalize after the authorization was deactivated: %v, want orderNotReady", errString(err))
	}
	if e.hsm.Stats().Signs != before {
		t.Fatal("the HSM signed for a deactivated authorization")
	}
}

// An authorization deactivated while its challenge is being validated stays
// deactivated; the challenge's outcome is still recorded, so that it is not
// left processing for some node to claim and validate again.
func TestValidationRecordedWhenAuthorizationDeactivatedMeanwhile(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.CAA = true })
	ctx := context.Background()
	o, err := e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "midway.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.ca.Authorization(ctx, e.acct, o.AuthzIDs[0])
	e.val.onCAA = func() {
		e.val.onCAA = nil
		if _, err := e.ca.DeactivateAuthorization(ctx, e.acct, a.ID); err != nil {
			t.Errorf("deactivate: %v", err)
		}
	}
	if _, _, err := e.ca.RespondChallenge(ctx, e.acct, a.Challenges[0].ID); err != nil {
		t.Fatalf("respond: %v", err)
	}
	ch, authz, err := e.ca.Challenge(ctx, e.acct, a.Challenges[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if authz.Status != acme.StatusDeactivated {
		t.Errorf("authorization %s, want deactivated", authz.Status)
	}
	if ch.Status != acme.StatusValid {
		t.Errorf("challenge %s, want valid (recorded, not left processing)", ch.Status)
	}
	if o, _ = e.ca.Order(ctx, e.acct, o.ID); o.Status == acme.StatusReady {
		t.Error("order ready with a deactivated authorization")
	}
}

// The certificate downloaded right after finalize (from this node's memory)
// is the one in the ledger, with the chain of its issuer; an unknown serial
// is not found.
func TestCertificateDownloadMatchesLedger(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	o := e.readyOrder(t, "dl.example.com")
	o, err := e.ca.Finalize(ctx, e.acct, e.key, o.ID, csrFor(t, "dl.example.com"))
	if err != nil || o.Status != acme.StatusValid {
		t.Fatalf("finalize: %v %v", o, err)
	}
	der, chains, err := e.ca.Certificate(ctx, o.CertSerial)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.store.GetCertificate(ctx, o.CertSerial)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(der, rec.DER) {
		t.Fatal("downloaded certificate differs from the ledger's")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		t.Fatal("no chain served with the certificate")
	}
	issuer, err := x509.ParseCertificate(chains[0][0])
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("certificate not signed by the first certificate of its chain: %v", err)
	}
	if _, _, err := e.ca.Certificate(ctx, "00"+o.CertSerial); problemType(err) != "malformed" {
		t.Fatalf("unknown serial: %v", errString(err))
	}
}

// RFC 8555 7.1.6: invalid is final. Answering an invalid challenge again, or
// another challenge of its invalid authorization, is malformed, even when the
// validation would now pass, and nothing becomes valid.
func TestInvalidChallengeStaysInvalid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.val.results["final.example.com"] = []error{&acme.ValidationError{Type: "incorrectResponse", Detail: "wrong key authorization"}}
	o, _ := e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "final.example.com"}}})
	a, _ := e.ca.Authorization(ctx, e.acct, o.AuthzIDs[0])
	if len(a.Challenges) < 2 {
		t.Fatalf("want several challenge types, got %d", len(a.Challenges))
	}
	if ch, _, err := e.ca.RespondChallenge(ctx, e.acct, a.Challenges[0].ID); err != nil || ch.Status != acme.StatusInvalid {
		t.Fatalf("first answer: %v %v", ch, err)
	}
	// The validator would now succeed (no more queued failures).
	for _, c := range a.Challenges {
		if _, _, err := e.ca.RespondChallenge(ctx, e.acct, c.ID); problemType(err) != "malformed" {
			t.Errorf("answering %s challenge again: %v, want malformed", c.Type, err)
		}
	}
	a, _ = e.ca.Authorization(ctx, e.acct, o.AuthzIDs[0])
	if a.Status != acme.StatusInvalid {
		t.Errorf("authorization %s, want invalid", a.Status)
	}
	for _, c := range a.Challenges {
		if c.Status == acme.StatusValid || c.Status == acme.StatusProcessing {
			t.Errorf("%s challenge became %s", c.Type, c.Status)
		}
	}
	if o, _ = e.ca.Order(ctx, e.acct, o.ID); o.Status != acme.StatusInvalid {
		t.Errorf("order %s, want invalid", o.Status)
	}
}

// Two challenges of one authorization answered together: one fails and makes
// the authorization invalid while the other is still being validated. The
// other passes afterwards, but is not recorded valid under an invalid
// authorization (RFC 8555 7.1.6).
func TestChallengeCannotPassUnderAnInvalidAuthorization(t *testing.T) {
	e := newEnv(t, func(c *acme.Config) { c.CAA = true })
	ctx := context.Background()
	// The first validation passes, the second fails.
	e.val.results["sibling.example.com"] = []error{nil, &acme.ValidationError{Type: "incorrectResponse", Detail: "wrong key authorization"}}
	o, _ := e.ca.NewOrder(ctx, e.acct, acme.NewOrderRequest{Identifiers: []acme.Identifier{{Type: "dns", Value: "sibling.example.com"}}})
	a, _ := e.ca.Authorization(ctx, e.acct, o.AuthzIDs[0])
	passing, failing := a.Challenges[0], a.Challenges[1]
	e.val.onCAA = func() { // while the passing one checks CAA, the other fails
		e.val.onCAA = nil
		if ch, _, err := e.ca.RespondChallenge(ctx, e.acct, failing.ID); err != nil || ch.Status != acme.StatusInvalid {
			t.Errorf("failing challenge: %v %v", ch, err)
		}
	}
	if _, _, err := e.ca.RespondChallenge(ctx, e.acct, passing.ID); err != nil {
		t.Fatalf("respond: %v", err)
	}
	ch, authz, err := e.ca.Challenge(ctx, e.acct, passing.ID)
	if err != nil {
		t.Fatal(err)
	}
	if authz.Status != acme.StatusInvalid || ch.Status != acme.StatusInvalid {
		t.Errorf("authorization %s, challenge %s; want both invalid", authz.Status, ch.Status)
	}
	if o, _ = e.ca.Order(ctx, e.acct, o.ID); o.Status != acme.StatusInvalid {
		t.Errorf("order %s, want invalid", o.Status)
	}
}
