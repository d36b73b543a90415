package validation

import (
	"fmt"
	"slices"
	"testing"
)

// The addresses a validation dialed are reported for the audit log.
func TestContactedAddresses(t *testing.T) {
	v, s, _ := httpSetup(t, serveKeyAuth(testKeyAuth), nil)
	var c Contacted
	wantOK(t, v.Validate(WithContacted(bg, &c), dnsIdent("example.test"), ChallengeHTTP01, testToken, testKeyAuth))
	if got, want := c.Addresses(), []string{fmt.Sprintf("127.0.0.1:%d", s.port)}; !slices.Equal(got, want) {
		t.Fatalf("contacted %v, want %v", got, want)
	}
}
