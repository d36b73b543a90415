package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// TryLeaseAndCertificates takes a lease as TryLease does and returns the
// order's ledger rows with it, including those the previous holder recorded
// just before it released the lease.
func testTryLeaseAndCertificates(t *testing.T, s storage.Store) {
	ctx := t.Context()
	got, certs, err := s.TryLeaseAndCertificates(ctx, "issue/order-1", "signer-a", base, time.Minute, "order-1")
	must(t, err, "TryLeaseAndCertificates of a free lease")
	if !got || len(certs) != 0 {
		t.Fatalf("a free lease of an order without rows: got %v, %d rows; want the lease and no rows", got, len(certs))
	}
	issued := reserve(t, s, "01", "r1", "order-1", at(0), at(90*day), true)

	got, certs, err = s.TryLeaseAndCertificates(ctx, "issue/order-1", "signer-b", at(time.Second), time.Minute, "order-1")
	must(t, err, "TryLeaseAndCertificates of a held lease")
	if got {
		t.Fatal("signer-b took a lease signer-a holds")
	}
	must(t, s.ReleaseLease(ctx, "issue/order-1", "signer-a"), "ReleaseLease")
	got, certs, err = s.TryLeaseAndCertificates(ctx, "issue/order-1", "signer-b", at(2*time.Second), time.Minute, "order-1")
	must(t, err, "TryLeaseAndCertificates of a released lease")
	if !got {
		t.Fatal("signer-b did not get a released lease")
	}
	same(t, "the order's rows with the lease", certs, []*storage.Certificate{issued})

	// An expired lease goes to the next holder, as with TryLease.
	got, _, err = s.TryLeaseAndCertificates(ctx, "issue/order-1", "signer-c", at(2*time.Minute), time.Minute, "order-1")
	must(t, err, "TryLeaseAndCertificates of an expired lease")
	if !got {
		t.Fatal("signer-c did not get an expired lease")
	}
}
