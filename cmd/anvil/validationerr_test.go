package main

import (
	"errors"
	"testing"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/validation"
)

// The validator's failures reach acme as RFC 8555 types, and acme retries
// exactly those that failed to reach the applicant's server: a validation
// constant renamed or added shows up here, not as a challenge that silently
// stops being retried.
func TestValidationFailuresRetriedByAcme(t *testing.T) {
	for typ, retry := range map[string]bool{
		validation.ProblemConnection:         true,
		validation.ProblemDNS:                true,
		validation.ProblemTLS:                true,
		validation.ProblemUnauthorized:       false,
		validation.ProblemIncorrectResponse:  false,
		validation.ProblemCAA:                false,
		validation.ProblemMalformed:          false,
		validation.ProblemServerInternal:     false,
		validation.ProblemRejectedIdentifier: false,
	} {
		err := convertValidationError(&validation.Problem{Type: typ, Detail: "d", Err: errors.New("cause")})
		var ve *acme.ValidationError
		if !errors.As(err, &ve) || ve.Type != typ || ve.Detail != "d" {
			t.Errorf("%s: converted to %#v", typ, err)
			continue
		}
		if ve.Retryable() != retry {
			t.Errorf("%s: retryable %v, want %v", typ, ve.Retryable(), retry)
		}
	}
	if convertValidationError(nil) != nil {
		t.Error("no failure must stay no failure")
	}
}
