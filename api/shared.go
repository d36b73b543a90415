package api

import (
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
)

// The helpers below let a second front end on the same core (api/legacy, the
// ACME v1 compatibility API) apply exactly the checks this package applies,
// rather than a copy of them that could drift.

// DecodeStrict decodes JSON the way signed ACME messages need: duplicate keys,
// trailing data and case-folded field names are errors.
func DecodeStrict(data []byte, v any) error { return decodeStrict(data, v) }

// CheckAlgorithm applies the JWS algorithm allow-list (no "none", nothing
// symmetric) and checks that key can make alg.
func CheckAlgorithm(alg string, key *jose.JSONWebKey) error {
	if !slices.Contains(allowedAlgs, alg) {
		return acme.BadSignatureAlgorithm(allowedAlgs, "JWS algorithm %q is not allowed (use one of %s)", alg, strings.Join(allowedAlgs, ", "))
	}
	return algMatchesKey(alg, key)
}
