package signer

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

// Every issuance error crosses the wire as the kind and status it always had,
// and comes back as the same error, retried only when nothing can have been
// signed.
func TestIssuanceErrorsOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		err       error
		kind      string
		status    int
		transient bool
	}{
		{issuance.ErrBadCSR, "badCSR", http.StatusBadRequest, false},
		{issuance.ErrBadPublicKey, "badPublicKey", http.StatusBadRequest, false},
		{issuance.ErrBadSignatureAlgorithm, "badSignatureAlgorithm", http.StatusBadRequest, false},
		{issuance.ErrNamesMismatch, "namesMismatch", http.StatusBadRequest, false},
		{issuance.ErrRejectedName, "rejectedName", http.StatusForbidden, false},
		{issuance.ErrUnknownProfile, "unknownProfile", http.StatusBadRequest, false},
		{issuance.ErrLint, "lint", http.StatusUnprocessableEntity, false},
		{issuance.ErrLedger, "ledger", http.StatusServiceUnavailable, false},
		{issuance.ErrSignerUnavailable, "signerUnavailable", http.StatusServiceUnavailable, true},
		{issuance.ErrOutcomeUnknown, "inProgress", http.StatusServiceUnavailable, true},
		{issuance.ErrRequesterConflict, "conflict", http.StatusConflict, false},
		{issuance.ErrSignature, "signature", http.StatusInternalServerError, false},
		{fmt.Errorf("no such table"), "internal", http.StatusInternalServerError, false},
	} {
		kind, status := kindOf(fmt.Errorf("%w: details", tc.err))
		if kind != tc.kind || status != tc.status {
			t.Errorf("%v: kind %s, status %d; want %s, %d", tc.err, kind, status, tc.kind, tc.status)
		}
		back, transient := errorOf(kind)
		if tc.kind == "internal" {
			if back != nil {
				t.Errorf("internal came back as %v, want no sentinel", back)
			}
			continue
		}
		if back != tc.err || transient != tc.transient {
			t.Errorf("%s came back as %v, transient %v; want %v, %v", kind, back, transient, tc.err, tc.transient)
		}
	}
}
