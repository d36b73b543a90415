package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
)

// lego proves control of names by dns-01 (a DNS name, and a wildcard with its
// base name in one order), and of an IP address by http-01; the server offers
// each identifier only the challenges that can prove it.
func TestLegoChallenges(t *testing.T) {
	ca := NewCA(t)

	t.Run("dns-01", func(t *testing.T) {
		client, user := legoClient(t, ca, newKey(t))
		register(t, client, user)
		p := useDNS01(t, ca, client)
		res := mustObtain(t, client, obtainReq("dns.anvil-e2e.com"))
		verifyBundle(t, ca, res.Certificate, "dns.anvil-e2e.com")
		if got := p.Presented(); !slices.Equal(got, []string{"_acme-challenge.dns.anvil-e2e.com."}) {
			t.Fatalf("lego published TXT records at %v", got)
		}
		// lego's clean-up reached the DNS server too.
		if left := ca.DNS.TXT("_acme-challenge.dns.anvil-e2e.com"); len(left) != 0 {
			t.Fatalf("TXT records left after clean-up: %v", left)
		}
	})

	t.Run("wildcard and its base name via dns-01", func(t *testing.T) {
		client, user := legoClient(t, ca, newKey(t))
		register(t, client, user)
		p := useDNS01(t, ca, client)
		names := []string{"*.wild.anvil-e2e.com", "wild.anvil-e2e.com"}
		res := mustObtain(t, client, obtainReq(names...))
		leaf := verifyBundle(t, ca, res.Certificate, "any.wild.anvil-e2e.com", "wild.anvil-e2e.com")
		if !slices.Contains(leaf.DNSNames, "*.wild.anvil-e2e.com") {
			t.Fatalf("leaf names %v lack the wildcard", leaf.DNSNames)
		}
		// Both authorizations are proven at the same DNS name, each with its
		// own record.
		if got := p.Presented(); len(got) != 2 || got[0] != "_acme-challenge.wild.anvil-e2e.com." || got[1] != got[0] {
			t.Fatalf("lego published TXT records at %v", got)
		}
	})

	t.Run("a wildcard is offered dns-01 only", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, o := rc.newOrder(nil, "*.only-dns.anvil-e2e.com")
		a := rc.authz(o.Authorizations[0])
		if !a.Wildcard || a.Identifier.Value != "only-dns.anvil-e2e.com" || !slices.Equal(a.challengeTypes(), []string{"dns-01"}) {
			t.Fatalf("wildcard authorization: wildcard=%v identifier %q challenges %v", a.Wildcard, a.Identifier.Value, a.challengeTypes())
		}
	})

	t.Run("dns-01 with the wrong TXT value is refused", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, o := rc.newOrder(nil, "wrong-txt.anvil-e2e.com")
		a := rc.authz(o.Authorizations[0])
		ch := a.challenge(t, "dns-01")
		// The digest of some other key authorization: a record left by
		// another account, say.
		sum := sha256.Sum256([]byte(ch.Token + ".not-this-account"))
		ca.DNS.SetTXT("_acme-challenge.wrong-txt.anvil-e2e.com", base64.RawURLEncoding.EncodeToString(sum[:]))
		got := rc.respond(ch)
		if got.Status != "invalid" || got.Error == nil || got.Error.Type != "urn:ietf:params:acme:error:incorrectResponse" {
			t.Fatalf("challenge after a wrong TXT record: %+v", got)
		}
	})

	t.Run("IP address via http-01", func(t *testing.T) {
		client, user := legoClient(t, ca, newKey(t))
		register(t, client, user)
		res := mustObtain(t, client, obtainReq("127.0.0.1"))
		leaf := verifyBundle(t, ca, res.Certificate, "127.0.0.1")
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(leaf.DNSNames) != 0 {
			t.Fatalf("leaf for 127.0.0.1 has IPs %v and names %v", leaf.IPAddresses, leaf.DNSNames)
		}
	})

	t.Run("an IP address is offered no dns-01", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, o := rc.newOrder(nil, "127.0.0.2")
		a := rc.authz(o.Authorizations[0])
		if a.Identifier.Type != "ip" || slices.Contains(a.challengeTypes(), "dns-01") || !slices.Contains(a.challengeTypes(), "http-01") {
			t.Fatalf("IP authorization: %s %s with challenges %v", a.Identifier.Type, a.Identifier.Value, a.challengeTypes())
		}
	})

	t.Run("an IP address outside policy is refused", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		st, body, h := rc.post(rc.url("newOrder"), map[string]any{"identifiers": identifiers("192.0.2.1")})
		expectProblem(t, st, body, h, http.StatusBadRequest, "rejectedIdentifier")
	})
}

// With only tls-alpn-01 enabled on the server, lego proves a DNS name and an
// IP address with its own tls-alpn-01 responder.
func TestLegoTLSALPN01(t *testing.T) {
	ca := NewCA(t, WithACME("challenge_types: [tls-alpn-01]"))
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	client.Challenge.Remove(challenge.HTTP01)
	if err := client.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", strconv.Itoa(ca.TLSPort))); err != nil {
		t.Fatal(err)
	}

	t.Run("the server offers tls-alpn-01 only", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, o := rc.newOrder(nil, "offer.alpn.anvil-e2e.com", "127.0.0.3")
		for _, u := range o.Authorizations {
			if a := rc.authz(u); !slices.Equal(a.challengeTypes(), []string{"tls-alpn-01"}) {
				t.Fatalf("authorization for %s offers %v", a.Identifier.Value, a.challengeTypes())
			}
		}
	})
	t.Run("DNS name", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("alpn.anvil-e2e.com"))
		verifyBundle(t, ca, res.Certificate, "alpn.anvil-e2e.com")
	})
	t.Run("IP address", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("127.0.0.1"))
		leaf := verifyBundle(t, ca, res.Certificate, "127.0.0.1")
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("leaf IPs %v", leaf.IPAddresses)
		}
	})
	t.Run("a wildcard cannot be ordered without dns-01", func(t *testing.T) {
		_, err := client.Certificate.Obtain(context.Background(), obtainReq("*.alpn.anvil-e2e.com"))
		expectLegoProblem(t, err, "rejectedIdentifier")
	})
}
