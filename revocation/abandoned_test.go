package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// A serial whose process ended between intent and outcome may have been
// signed: once abandoned it is published as revoked, reason
// cessationOfOperation, in the CRL and by OCSP, though no certificate for it
// is on record.
func TestAbandonedSerialIsPublishedRevoked(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"lost.example.com"}}, key)
	p, err := e.svc.Prepare(ctx, issuance.Request{CSR: csr, DNSNames: []string{"lost.example.com"}, Requester: "order-lost"})
	if err != nil {
		t.Fatal(err)
	}
	// The process "dies" here, between the intent and the signature. What may
	// have been signed is exactly the lint certificate's TBS.
	lost, err := x509.ParseCertificate(p.LintCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.AbandonIntents(ctx, "", time.Now().Add(-time.Second)); err != nil || n != 1 {
		t.Fatalf("AbandonIntents = %d, %v; want the one open intent", n, err)
	}

	r := e.query(t, lost, nil)
	if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.CessationOfOperation || r.RevokedAt.IsZero() {
		t.Fatalf("OCSP for an abandoned serial: status %d reason %d; want revoked, cessationOfOperation", r.Status, r.RevocationReason)
	}
	if r := e.query(t, e.certs[0], nil); r.Status != ocsp.Good {
		t.Fatalf("OCSP for an issued certificate: status %d, want good", r.Status)
	}

	e.pub.RefreshNow(ctx)
	crl := e.fetchCRL(t)
	reasons := map[string]int{}
	for _, rc := range crl.RevokedCertificateEntries {
		reasons[fmt.Sprintf("%x", rc.SerialNumber)] = rc.ReasonCode
	}
	want := map[string]int{fmt.Sprintf("%x", lost.SerialNumber): storage.ReasonCessationOfOperation}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("CRL entries %v, want %v", reasons, want)
	}
}
