package issuance_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
)

type observed struct {
	issuer, profile string
	err             error
	d               time.Duration
}

type recordingObserver struct {
	mu     sync.Mutex
	done   []observed
	phases []string
}

func (o *recordingObserver) IssuanceDone(issuer, profile string, err error, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = append(o.done, observed{issuer, profile, err, d})
}

func (o *recordingObserver) IssuancePhaseDone(phase, issuer string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.phases = append(o.phases, phase+"/"+issuer)
}

// The observer is told of each issuance with its issuer, profile, error and
// time, and of its lint, HSM sign and store parts; a failed lint stops before
// the HSM, and a profile a client made up never becomes a label.
func TestObserverSeesIssuanceAndItsParts(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	long := issuancetest.Profile(t, "long", issuance.ProfileConfig{Validity: durationOf(500 * 24 * time.Hour)})
	tls := issuancetest.Profile(t, "tls", issuance.ProfileConfig{})
	obs := &recordingObserver{}
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{iss}, Profiles: []*issuance.Profile{tls, long},
		Ledger: issuancetest.NewMemoryLedger(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrFor(t, key, "a.example.com")
	ctx := context.Background()

	if _, err := svc.Issue(ctx, issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}}); err != nil {
		t.Fatal(err)
	}
	name := iss.Name()
	if want := []string{"lint/" + name, "hsm_sign/" + name, "store/" + name}; !slices.Equal(obs.phases, want) {
		t.Fatalf("phases %v, want %v", obs.phases, want)
	}
	if len(obs.done) != 1 || obs.done[0].issuer != name || obs.done[0].profile != "tls" || obs.done[0].err != nil || obs.done[0].d <= 0 {
		t.Fatalf("issued: %+v", obs.done)
	}

	obs.phases, obs.done = nil, nil
	_, err = svc.Issue(ctx, issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}, Profile: "long"})
	if !errors.Is(err, issuance.ErrLint) {
		t.Fatalf("long profile: %v, want a lint error", err)
	}
	if len(obs.phases) != 0 || len(obs.done) != 1 || obs.done[0].profile != "long" || !errors.Is(obs.done[0].err, issuance.ErrLint) {
		t.Fatalf("lint failure: phases %v, done %+v", obs.phases, obs.done)
	}

	obs.done = nil
	_, err = svc.Issue(ctx, issuance.Request{CSR: csr, DNSNames: []string{"a.example.com"}, Profile: "<script>"})
	if !errors.Is(err, issuance.ErrUnknownProfile) {
		t.Fatalf("made-up profile: %v", err)
	}
	if len(obs.done) != 1 || obs.done[0].profile != "" || obs.done[0].issuer != "" {
		t.Fatalf("made-up profile reached the observer as %+v", obs.done)
	}
}
