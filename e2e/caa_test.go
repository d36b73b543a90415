package e2e

import (
	"context"
	"net/http"
	"testing"

	"github.com/miekg/dns"
)

// issue and issuewild build CAA records (RFC 8659) for the test's DNS server.
func issue(value string) dns.CAA     { return dns.CAA{Tag: "issue", Value: value} }
func issuewild(value string) dns.CAA { return dns.CAA{Tag: "issuewild", Value: value} }

// CAA (RFC 8659, with RFC 8657's accounturi and validationmethods) as a lego
// user meets it: the records a domain publishes decide whether this CA, known
// by its CAA identity anvil.localhost, issues; a refusal reaches the client
// as a problem of type caa on the challenge.
func TestCAA(t *testing.T) {
	// caa_recheck_after is tiny so that finalize checks CAA again, as it
	// must once a validation is older than the configured bound.
	ca := NewCA(t, WithACME("caa_recheck_after: 1ms"))
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	useDNS01(t, ca, client) // every subtest validates by dns-01, so that wildcards work too
	account := user.reg.Location

	obtain := func(t *testing.T, names ...string) error {
		t.Helper()
		_, err := client.Certificate.Obtain(context.Background(), obtainReq(names...))
		return err
	}
	allowed := func(t *testing.T, names ...string) {
		t.Helper()
		if err := obtain(t, names...); err != nil {
			t.Fatalf("CAA should allow %v: %v", names, err)
		}
	}
	refused := func(t *testing.T, names ...string) {
		t.Helper()
		p := expectLegoProblem(t, obtain(t, names...), "caa")
		if p.HTTPStatus != http.StatusForbidden {
			t.Fatalf("caa problem with status %d, want 403", p.HTTPStatus)
		}
	}

	t.Run("no records allow", func(t *testing.T) {
		allowed(t, "no-caa.anvil-e2e.com")
	})
	t.Run("issue naming this CA allows", func(t *testing.T) {
		ca.DNS.SetCAA("ours.anvil-e2e.com", issue("anvil.localhost"), issue("other-ca.example"))
		allowed(t, "ours.anvil-e2e.com")
	})
	t.Run("issue naming another CA forbids", func(t *testing.T) {
		ca.DNS.SetCAA("theirs.anvil-e2e.com", issue("other-ca.example"))
		refused(t, "theirs.anvil-e2e.com")
	})
	t.Run("the challenge shows the caa problem", func(t *testing.T) {
		// What a client polling the authorization reads.
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		ca.DNS.SetCAA("theirs2.anvil-e2e.com", issue("other-ca.example"))
		_, o := rc.newOrder(nil, "theirs2.anvil-e2e.com")
		ch := rc.authz(o.Authorizations[0]).challenge(t, "http-01")
		ca.challengeServer(t).set(ch.Token, ch.Token+"."+rc.thumbprint())
		got := rc.respond(ch)
		if got.Status != "invalid" || got.Error == nil || got.Error.Type != "urn:ietf:params:acme:error:caa" || got.Error.Status != http.StatusForbidden {
			t.Fatalf("challenge after a CAA refusal: %+v (error %+v)", got, got.Error)
		}
		if a := rc.authz(o.Authorizations[0]); a.Status != "invalid" {
			t.Fatalf("authorization is %s after a CAA refusal", a.Status)
		}
	})
	t.Run("a parent's records govern a name without its own", func(t *testing.T) {
		ca.DNS.SetCAA("parent.anvil-e2e.com", issue("other-ca.example"))
		refused(t, "www.parent.anvil-e2e.com")
	})
	t.Run("issue with no CA forbids", func(t *testing.T) {
		ca.DNS.SetCAA("nobody.anvil-e2e.com", issue(";"))
		refused(t, "nobody.anvil-e2e.com")
	})
	t.Run("issuewild forbids a wildcard that issue allows", func(t *testing.T) {
		ca.DNS.SetCAA("wild-no.anvil-e2e.com", issue("anvil.localhost"), issuewild("other-ca.example"))
		refused(t, "*.wild-no.anvil-e2e.com")
		allowed(t, "wild-no.anvil-e2e.com") // the same records let the base name through
	})
	t.Run("issuewild allows a wildcard that issue forbids", func(t *testing.T) {
		ca.DNS.SetCAA("wild-yes.anvil-e2e.com", issue(";"), issuewild("anvil.localhost"))
		allowed(t, "*.wild-yes.anvil-e2e.com")
		refused(t, "wild-yes.anvil-e2e.com")
	})
	t.Run("accounturi of another account forbids", func(t *testing.T) {
		ca.DNS.SetCAA("acct-other.anvil-e2e.com", issue("anvil.localhost; accounturi="+ca.BaseURL+"/acme/acct/someone-else"))
		refused(t, "acct-other.anvil-e2e.com")
	})
	t.Run("accounturi of this account allows", func(t *testing.T) {
		ca.DNS.SetCAA("acct-mine.anvil-e2e.com", issue("anvil.localhost; accounturi="+account))
		allowed(t, "acct-mine.anvil-e2e.com")
	})
	t.Run("validationmethods without the method used forbids", func(t *testing.T) {
		ca.DNS.SetCAA("method-no.anvil-e2e.com", issue("anvil.localhost; validationmethods=http-01,tls-alpn-01"))
		refused(t, "method-no.anvil-e2e.com")
	})
	t.Run("validationmethods with the method used allows", func(t *testing.T) {
		ca.DNS.SetCAA("method-yes.anvil-e2e.com", issue("anvil.localhost; validationmethods=dns-01"))
		allowed(t, "method-yes.anvil-e2e.com")
	})
	t.Run("an unknown critical property forbids", func(t *testing.T) {
		ca.DNS.SetCAA("critical.anvil-e2e.com", issue("anvil.localhost"), dns.CAA{Flag: 128, Tag: "futureproperty", Value: "whatever"})
		refused(t, "critical.anvil-e2e.com")
	})
	t.Run("an unknown non-critical property is ignored", func(t *testing.T) {
		ca.DNS.SetCAA("noncritical.anvil-e2e.com", issue("anvil.localhost"), dns.CAA{Flag: 0, Tag: "futureproperty", Value: "whatever"})
		allowed(t, "noncritical.anvil-e2e.com")
	})
	t.Run("records published after validation stop finalize", func(t *testing.T) {
		// The name validates while CAA allows; the domain then names another
		// CA. Past caa_recheck_after the CA must look again before it signs.
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, o := rc.readyOrder("recheck.anvil-e2e.com")
		ca.DNS.SetCAA("recheck.anvil-e2e.com", issue("other-ca.example"))
		csr := csrFor(t, "recheck.anvil-e2e.com")
		st, body, h := rc.post(o["finalize"].(string), csr)
		expectProblem(t, st, body, h, http.StatusForbidden, "caa")
	})
}
