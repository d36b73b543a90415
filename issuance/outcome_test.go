package issuance_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
)

// faultySigner signs with a software key and, once armed, fails or corrupts
// its signatures, as a misbehaving HSM can.
type faultySigner struct {
	crypto.Signer
	fail, corrupt, hsmCheck atomic.Bool
}

func (s *faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("CKR_DEVICE_ERROR")
	}
	if s.hsmCheck.Load() { // what package hsm returns for a signature that did not verify
		return nil, fmt.Errorf("hsm: sign with key int-ecdsa: %w", hsm.ErrSignatureCheckFailed)
	}
	sig, err := s.Signer.Sign(r, digest, opts)
	if err == nil && s.corrupt.Load() {
		sig[len(sig)/2] ^= 0x01
	}
	return sig, err
}

func faultyIssuer(t *testing.T) (*issuance.Issuer, *faultySigner) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer := &faultySigner{Signer: key}
	cert := issuancetest.NewRoot(t).Intermediate(t, "Anvil Faulty Issuer", key.Public())
	iss, err := issuance.NewIssuer(context.Background(), "faulty", cert, signer, issuancetest.DefaultURLs)
	if err != nil {
		t.Fatal(err)
	}
	return iss, signer
}

// Each failed signature leaves its ledger row closed as not signed, with the
// reason, and returns no certificate; a good one closes it as issued.
func TestLedgerOutcomes(t *testing.T) {
	iss, signer := faultyIssuer(t)
	ledger := issuancetest.NewMemoryLedger()
	svc := newService(t, ledger, []*issuance.Issuer{iss})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := issuance.Request{CSR: csrFor(t, key, "a.example.com"), DNSNames: []string{"a.example.com"}}

	for _, c := range []struct {
		name    string
		arm     *atomic.Bool
		wantErr error
		reason  string
	}{
		{"the HSM call fails", &signer.fail, nil, issuance.NotSignedHSMError},
		{"the HSM returns a corrupted signature", &signer.corrupt, issuance.ErrSignature, issuance.NotSignedBadSignature},
		{"the hsm layer finds the signature corrupted", &signer.hsmCheck, hsm.ErrSignatureCheckFailed, issuance.NotSignedBadSignature},
		{"the HSM signs", nil, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.arm != nil {
				c.arm.Store(true)
				defer c.arm.Store(false)
			}
			p, err := svc.Prepare(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			entry, ok := ledger.Entry(p.Serial())
			if !ok || entry.LintCert == nil {
				t.Fatal("no intent recorded before signing")
			}
			issued, err := p.Sign(context.Background())
			entry, _ = ledger.Entry(p.Serial())
			if c.reason == "" {
				if err != nil || entry.Cert == nil || entry.NotSigned != "" {
					t.Fatalf("Sign = %v; entry issued=%v not_signed=%q, want issued", err, entry.Cert != nil, entry.NotSigned)
				}
				return
			}
			if err == nil || issued != nil {
				t.Fatal("a failed signature returned a certificate")
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("Sign error %v, want %v", err, c.wantErr)
			}
			if entry.NotSigned != c.reason || entry.Cert != nil {
				t.Fatalf("ledger entry not_signed=%q issued=%v, want not_signed %q", entry.NotSigned, entry.Cert != nil, c.reason)
			}
		})
	}
}

// A finalize for an issuer whose token is known to be down fails at once,
// before a serial is reserved or anything written, and never calls the module.
func TestTokenDownFailsBeforeTheLedger(t *testing.T) {
	tok := issuancetest.Token(t)
	iss := issuancetest.Issuer(t, tok, issuancetest.NewRoot(t), hsm.ECDSAP256)
	ledger := issuancetest.NewMemoryLedger()
	svc := newService(t, ledger, []*issuance.Issuer{iss})
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err := svc.Issue(context.Background(), issuance.Request{CSR: csrFor(t, key, "a.example.com"), DNSNames: []string{"a.example.com"}})
	if !errors.Is(err, issuance.ErrSignerUnavailable) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("got %v, want ErrSignerUnavailable saying the token is down", err)
	}
	if ledger.Len() != 0 {
		t.Fatalf("the ledger has %d rows; a request for a token known to be down must write nothing", ledger.Len())
	}
}

// recordFailLedger fails to record issued certificates, as a database that
// goes away between the intent and the outcome would.
type recordFailLedger struct{ *issuancetest.MemoryLedger }

func (recordFailLedger) RecordIssued(context.Context, *big.Int, []byte) error {
	return errors.New("database is locked")
}

// A signature that verifies but cannot be recorded is never returned, and its
// row is closed as abandoned (so that its serial is published as revoked).
func TestUnrecordedSignatureIsAbandoned(t *testing.T) {
	iss, _ := faultyIssuer(t)
	ledger := recordFailLedger{issuancetest.NewMemoryLedger()}
	svc := newService(t, ledger, []*issuance.Issuer{iss})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := svc.Prepare(context.Background(), issuance.Request{CSR: csrFor(t, key, "a.example.com"), DNSNames: []string{"a.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	issued, err := p.Sign(context.Background())
	if !errors.Is(err, issuance.ErrLedger) || issued != nil {
		t.Fatalf("Sign = %v, %v; want ErrLedger and no certificate", issued, err)
	}
	if entry, _ := ledger.Entry(p.Serial()); !entry.Abandoned {
		t.Fatalf("ledger entry after an unrecorded signature: abandoned=%v not_signed=%q; want abandoned", entry.Abandoned, entry.NotSigned)
	}
}
