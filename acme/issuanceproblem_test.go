package acme

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

// A failed issuance shows the client the problem it always did, and leaves
// the order ready to finalize again only when that may succeed.
func TestIssuanceProblems(t *testing.T) {
	for _, tc := range []struct {
		err         error
		typ         string
		cond        Condition
		final       bool
		showsCause  bool
		detailStart string
	}{
		{issuance.ErrBadCSR, "badCSR", Refused, false, true, "bad CSR"},
		{issuance.ErrBadPublicKey, "badPublicKey", Refused, false, true, "unacceptable public key"},
		{issuance.ErrBadSignatureAlgorithm, "badCSR", Refused, false, true, "unacceptable CSR"},
		{issuance.ErrNamesMismatch, "badCSR", Refused, false, true, "CSR names differ"},
		{issuance.ErrRejectedName, "rejectedIdentifier", Refused, true, true, "rejected name"},
		{issuance.ErrUnknownProfile, "invalidProfile", Refused, true, true, "unknown profile"},
		{issuance.ErrRequesterConflict, "orderNotReady", Refused, true, true, "this order already has a certificate"},
		{issuance.ErrLint, "serverInternal", Refused, true, false, "the certificate failed a pre-issuance lint"},
		{issuance.ErrSignerUnavailable, "serverInternal", Unavailable, false, false, "the signer is unavailable"},
		{issuance.ErrLedger, "serverInternal", Refused, false, false, "issuance failed"},
		{issuance.ErrSignature, "serverInternal", Refused, false, false, "issuance failed"},
		{errors.New("no such table"), "serverInternal", Refused, false, false, "issuance failed"},
	} {
		err := fmt.Errorf("%w: secret-detail", tc.err)
		c := issuance.Classify(err)
		p := issuanceProblem(c, err)
		if p.Type != ProblemNS+tc.typ || p.Condition != tc.cond || c.Final != tc.final {
			t.Errorf("%v: %s (condition %d), final %v; want %s (%d), %v", tc.err, p.Type, p.Condition, c.Final, tc.typ, tc.cond, tc.final)
		}
		if strings.Contains(p.Detail, "secret-detail") != tc.showsCause || !strings.HasPrefix(p.Detail, tc.detailStart) {
			t.Errorf("%v: detail %q", tc.err, p.Detail)
		}
		if tc.cond == Unavailable && p.RetryAfter <= 0 {
			t.Errorf("%v: no Retry-After", tc.err)
		}
	}
}
