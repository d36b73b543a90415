package e2e

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
)

// reasonPtr is a revocation reason as lego takes it.
func reasonPtr(r uint) *uint { return &r }

// Revocation (RFC 8555 7.6) the three ways a client may ask: as the account
// the certificate was issued to, with the certificate's own key, and as
// another account that has proven control of every name in it. Only the
// reasons a subscriber may give are taken, and a certificate is revoked once.
func TestRevocation(t *testing.T) {
	ca := NewCA(t)
	ctx := context.Background()
	key := newKey(t)
	client, user := legoClient(t, ca, key)
	register(t, client, user)
	owner := rawAs(t, ca, key, user.reg.Location)

	t.Run("by the issuing account", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("rev-account.anvil-e2e.com"))
		leaf := leafOf(t, res.Certificate)
		if st := ca.certStatus(t, leaf); st != "valid" {
			t.Fatalf("before revocation the CA says %q", st)
		}
		if err := client.Certificate.RevokeWithReason(ctx, res.Certificate, reasonPtr(4)); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		if st := ca.certStatus(t, leaf); !strings.HasPrefix(st, "revoked at") || !strings.Contains(st, "superseded") {
			t.Fatalf("after revocation the CA says %q", st)
		}
		// A second revocation: alreadyRevoked, to lego and by hand.
		err := client.Certificate.RevokeWithReason(ctx, res.Certificate, reasonPtr(4))
		expectLegoProblem(t, err, "alreadyRevoked")
		st, body, h := owner.as(t).revoke(leaf, -1)
		expectProblem(t, st, body, h, http.StatusBadRequest, "alreadyRevoked")
	})

	t.Run("with the certificate's key", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("rev-key.anvil-e2e.com"))
		leaf := leafOf(t, res.Certificate)
		// Signed with some other key, in jwk: refused.
		stranger := newRawClient(t, ca, newKey(t))
		st, body, h := stranger.revoke(leaf, 1)
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		// Signed with the certificate's key (keyCompromise, the usual reason
		// to use it): revoked, though that key has no account.
		ck := certKey(t, res)
		if !p256(ck) {
			t.Fatalf("lego made a %T certificate key; the raw client signs with P-256", ck)
		}
		byKey := newRawClient(t, ca, ck)
		st, body, _ = byKey.revoke(leaf, 1)
		if st != http.StatusOK {
			t.Fatalf("revocation signed by the certificate key: %d %s", st, body)
		}
		if st := ca.certStatus(t, leaf); !strings.Contains(st, "keyCompromise") {
			t.Fatalf("after revocation the CA says %q", st)
		}
		st, body, h = byKey.revoke(leaf, 1)
		expectProblem(t, st, body, h, http.StatusBadRequest, "alreadyRevoked")
	})

	t.Run("by another account authorized for every name", func(t *testing.T) {
		names := []string{"rev-other.anvil-e2e.com", "www.rev-other.anvil-e2e.com"}
		res := mustObtain(t, client, obtainReq(names...))
		leaf := leafOf(t, res.Certificate)
		// An account with no authorization: refused.
		nobody := newRawClient(t, ca, newKey(t))
		nobody.register()
		st, body, h := nobody.revoke(leaf, 0)
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		// An account that validated one of the two names: still refused.
		half := newRawClient(t, ca, newKey(t))
		half.register()
		half.readyOrder(names[0])
		st, body, h = half.revoke(leaf, 0)
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		// An account that validated both (it never finalized): revoked.
		other := newRawClient(t, ca, newKey(t))
		other.register()
		other.readyOrder(names...)
		st, body, _ = other.revoke(leaf, 0)
		if st != http.StatusOK {
			t.Fatalf("revocation by an account authorized for every name: %d %s", st, body)
		}
		err := client.Certificate.Revoke(ctx, res.Certificate)
		expectLegoProblem(t, err, "alreadyRevoked")
	})

	t.Run("reasons", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("rev-reason.anvil-e2e.com"))
		leaf := leafOf(t, res.Certificate)
		// cACompromise, (7 is unused), certificateHold, removeFromCRL,
		// privilegeWithdrawn, aACompromise, and codes that mean nothing.
		for _, reason := range []int{2, 6, 7, 8, 9, 10, 11, 1000} {
			st, body, h := owner.as(t).revoke(leaf, reason)
			expectProblem(t, st, body, h, http.StatusBadRequest, "badRevocationReason")
		}
		err := client.Certificate.RevokeWithReason(ctx, res.Certificate, reasonPtr(6))
		expectLegoProblem(t, err, "badRevocationReason")
		if st := ca.certStatus(t, leaf); st != "valid" {
			t.Fatalf("after refused reasons the CA says %q", st)
		}
		// The subscriber's reasons are taken: 0, 1, 3, 4 and 5.
		for i, reason := range []uint{0, 1, 3, 4, 5} {
			r := mustObtain(t, client, obtainReq("rev-reason.anvil-e2e.com"))
			if err := client.Certificate.RevokeWithReason(ctx, r.Certificate, reasonPtr(reason)); err != nil {
				t.Fatalf("reason %d (#%d): %v", reason, i, err)
			}
		}
	})

	t.Run("concurrent revocations", func(t *testing.T) {
		// Revoked once: of eight requests at once, one succeeds and the
		// others are told it is already revoked.
		res := mustObtain(t, client, obtainReq("rev-race.anvil-e2e.com"))
		leaf := leafOf(t, res.Certificate)
		o := owner.as(t)
		payload := []byte(`{"certificate":"` + base64.RawURLEncoding.EncodeToString(leaf.Raw) + `","reason":4}`)
		var urls []string
		var bodies [][]byte
		for range 8 {
			urls = append(urls, o.url("revokeCert"))
			bodies = append(bodies, o.jws(o.header(o.url("revokeCert")), payload))
		}
		statuses, _ := o.race(urls, bodies)
		ok := 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				ok++
			case http.StatusBadRequest: // alreadyRevoked
			default:
				t.Fatalf("statuses %v", statuses)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 8 concurrent revocations succeeded: %v", ok, statuses)
		}
		st, body, h := o.revoke(leaf, 4)
		expectProblem(t, st, body, h, http.StatusBadRequest, "alreadyRevoked")
	})

	t.Run("a certificate this CA did not issue", func(t *testing.T) {
		// The dev intermediate is a certificate, but not one of the ledger's.
		pemBytes, err := os.ReadFile(filepath.Join(ca.Dir, "var/dev/pki/int-ecdsa.pem"))
		if err != nil {
			t.Fatal(err)
		}
		st, body, h := owner.as(t).revoke(readChain(t, pemBytes)[0], 0)
		expectProblem(t, st, body, h, http.StatusNotFound, "malformed")
	})
}

// renewalInfo GETs a certificate's renewal information as RFC 9773 describes.
func renewalInfo(t *testing.T, ca *CA, rc *rawClient, certID string) (int, http.Header, legoacme.RenewalInfo, []byte) {
	t.Helper()
	resp, err := ca.HTTPClient().Get(rc.url("renewalInfo") + "/" + certID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var info legoacme.RenewalInfo
	json.Unmarshal(body, &info)
	return resp.StatusCode, resp.Header, info, body
}

// ARI (RFC 9773): the CA suggests when to renew, a renewal names the
// certificate it replaces, and a certificate is replaced once.
func TestARI(t *testing.T) {
	ca := NewCA(t)
	ctx := context.Background()
	key := newKey(t)
	client, user := legoClient(t, ca, key)
	register(t, client, user)
	owner := rawAs(t, ca, key, user.reg.Location)
	if owner.url("renewalInfo") == "" {
		t.Fatal("the directory has no renewalInfo")
	}
	res := mustObtain(t, client, obtainReq("ari.anvil-e2e.com"))
	leaf := leafOf(t, res.Certificate)
	certID, err := api.MakeARICertID(leaf)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("suggested window", func(t *testing.T) {
		info, err := client.Certificate.GetRenewalInfo(ctx, leaf)
		if err != nil {
			t.Fatalf("renewal info: %v", err)
		}
		w := info.SuggestedWindow
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		// Within the certificate's life, in its later part, start before end.
		if !w.Start.After(leaf.NotBefore.Add(life/2)) || !w.End.Before(leaf.NotAfter) || !w.Start.Before(w.End) {
			t.Fatalf("window %s .. %s for a certificate valid %s .. %s", w.Start, w.End, leaf.NotBefore, leaf.NotAfter)
		}
		if info.RetryAfter <= 0 {
			t.Fatal("renewal info without Retry-After")
		}
		// A fresh certificate is not due: lego would not renew now.
		if at := info.ShouldRenewAt(time.Now(), time.Hour); at != nil {
			t.Fatalf("lego would renew a fresh certificate at %s", at)
		}
	})

	t.Run("unknown and malformed certificate IDs", func(t *testing.T) {
		aki, _, _ := strings.Cut(certID, ".")
		st, _, _, body := renewalInfo(t, ca, owner, aki+".AQIDBAUGBwgJ")
		if st != http.StatusNotFound {
			t.Fatalf("unknown serial: %d %s", st, body)
		}
		st, _, _, body = renewalInfo(t, ca, owner, "not-a-cert-id")
		if st != http.StatusBadRequest {
			t.Fatalf("malformed ID: %d %s", st, body)
		}
	})

	t.Run("replaces", func(t *testing.T) {
		// Another account may not claim to replace this account's certificate.
		other := newRawClient(t, ca, newKey(t))
		other.register()
		st, body, h := other.post(other.url("newOrder"), map[string]any{"identifiers": identifiers("ari.anvil-e2e.com"), "replaces": certID})
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		// An order sharing no name with the certificate does not replace it.
		st, body, h = owner.as(t).post(owner.url("newOrder"), map[string]any{"identifiers": identifiers("unrelated.anvil-e2e.com"), "replaces": certID})
		expectProblem(t, st, body, h, http.StatusBadRequest, "malformed")

		// lego renews, naming the certificate it replaces.
		req := obtainReq("ari.anvil-e2e.com")
		req.ReplacesCertID = certID
		renewed := mustObtain(t, client, req)
		verifyBundle(t, ca, renewed.Certificate, "ari.anvil-e2e.com")

		// The server recorded the replacement: a second one is refused with
		// 409 alreadyReplaced (which lego would quietly drop and retry
		// without, hence the raw client).
		st, body, h = owner.as(t).post(owner.url("newOrder"), map[string]any{"identifiers": identifiers("ari.anvil-e2e.com"), "replaces": certID})
		expectProblem(t, st, body, h, http.StatusConflict, "alreadyReplaced")

		// The replacement itself can be replaced, and the order says so.
		newID, _ := api.MakeARICertID(leafOf(t, renewed.Certificate))
		_, o := owner.as(t).newOrder(map[string]any{"replaces": newID}, "ari.anvil-e2e.com")
		if o.Replaces != newID {
			t.Fatalf("order replaces %q, want %q", o.Replaces, newID)
		}
	})

	t.Run("a revoked certificate is due at once", func(t *testing.T) {
		r := mustObtain(t, client, obtainReq("ari-revoked.anvil-e2e.com"))
		l := leafOf(t, r.Certificate)
		if err := client.Certificate.RevokeWithReason(ctx, r.Certificate, reasonPtr(1)); err != nil {
			t.Fatal(err)
		}
		info, err := client.Certificate.GetRenewalInfo(ctx, l)
		if err != nil {
			t.Fatalf("renewal info: %v", err)
		}
		now := time.Now()
		if info.SuggestedWindow.Start.After(now) {
			t.Fatalf("window for a revoked certificate starts %s, after now (%s)", info.SuggestedWindow.Start, now)
		}
		if at := info.ShouldRenewAt(now, 0); at == nil || at.After(now.Add(time.Minute)) {
			t.Fatalf("lego would renew the revoked certificate at %v", at)
		}
	})
}

// Profiles (the ACME profiles extension): the directory lists them, an order
// names one, and the certificate has that profile's lifetime.
func TestProfiles(t *testing.T) {
	ca := NewCA(t)
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	rc := newRawClient(t, ca, newKey(t))
	rc.register()

	t.Run("directory", func(t *testing.T) {
		profiles, _ := rc.directoryMeta()["profiles"].(map[string]any)
		want := map[string]string{"default": "90-day TLS server certificate", "shortlived": "7-day TLS certificate", "server": ""}
		if len(profiles) != len(want) {
			t.Fatalf("meta.profiles = %v", profiles)
		}
		for name, desc := range want {
			got, ok := profiles[name]
			if !ok || (desc != "" && got != desc) {
				t.Fatalf("meta.profiles[%q] = %v, want %q (all: %v)", name, got, desc, profiles)
			}
		}
	})

	lifetime := func(t *testing.T, profile, name string) time.Duration {
		t.Helper()
		req := obtainReq(name)
		req.Profile = profile
		leaf := verifyBundle(t, ca, mustObtain(t, client, req).Certificate, name)
		return leaf.NotAfter.Sub(leaf.NotBefore)
	}
	day := 24 * time.Hour
	for _, c := range []struct {
		profile string
		want    time.Duration
	}{{"", 90 * day}, {"default", 90 * day}, {"shortlived", 7 * day}, {"server", 30 * day}} {
		t.Run("profile "+cmp.Or(c.profile, "not named"), func(t *testing.T) {
			got := lifetime(t, c.profile, "profile-"+cmp.Or(c.profile, "none")+".anvil-e2e.com")
			// Backdating and whole-second rounding move the ends a little.
			if got < c.want-2*time.Hour || got > c.want+2*time.Hour {
				t.Fatalf("profile %q: certificate valid for %s, want about %s", c.profile, got, c.want)
			}
		})
	}

	t.Run("the order names its profile", func(t *testing.T) {
		_, o := rc.as(t).newOrder(map[string]any{"profile": "shortlived"}, "profile-order.anvil-e2e.com")
		if o.Profile != "shortlived" {
			t.Fatalf("order profile %q", o.Profile)
		}
	})

	t.Run("unknown profile", func(t *testing.T) {
		req := obtainReq("profile-unknown.anvil-e2e.com")
		req.Profile = "forever"
		_, err := client.Certificate.Obtain(context.Background(), req)
		expectLegoProblem(t, err, "invalidProfile")
	})
}

// Alternate chains: the ECDSA issuer offers, besides its chain to Root X1, a
// chain through X1 cross-signed by Root X2 (Link rel="alternate"); lego's
// preferred chain picks it, and it verifies for a client that trusts only X2.
func TestAlternateChain(t *testing.T) {
	ca := NewCA(t)
	key := newKey(t)
	client, user := legoClient(t, ca, key)
	register(t, client, user)
	// The same account, by hand, to fetch certificate URLs with POST-as-GET
	// (a plain GET is 405, RFC 8555 6.3).
	rc := newRawClient(t, ca, key)
	if st, body, h := rc.post(rc.url("newAccount"), map[string]any{"onlyReturnExisting": true}); st != http.StatusOK {
		t.Fatalf("newAccount onlyReturnExisting: %d %s", st, body)
	} else {
		rc.kid = h.Get("Location")
	}
	fetch := func(url string) (int, []byte, http.Header) { return rc.send(url, rc.jws(rc.header(url), nil)) }
	x2 := x509.NewCertPool()
	x2PEM, err := os.ReadFile(filepath.Join(ca.Dir, "var/dev/pki/root-x2.pem"))
	if err != nil || !x2.AppendCertsFromPEM(x2PEM) {
		t.Fatalf("root-x2.pem: %v", err)
	}
	const x2Name = "Anvil Development Root X2"
	verifyX2 := func(bundle []byte, name string) error {
		chain := readChain(t, bundle)
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: x2, Intermediates: inter})
		return err
	}

	t.Run("default chain", func(t *testing.T) {
		res := mustObtain(t, client, obtainReq("chain-default.anvil-e2e.com"))
		verifyBundle(t, ca, res.Certificate, "chain-default.anvil-e2e.com")
		if err := verifyX2(res.Certificate, "chain-default.anvil-e2e.com"); err == nil {
			t.Fatal("the default chain verifies to Root X2 alone; the alternate would be pointless")
		}
		// The certificate URL points at the alternate.
		_, _, hdr := fetch(res.CertURL)
		alts := linkRel(hdr, "alternate")
		if len(alts) != 1 {
			t.Fatalf("Link rel=alternate: %v (all Link: %v)", alts, hdr.Values("Link"))
		}
		st, body, hdr := fetch(alts[0])
		chain := readChain(t, body)
		if st != http.StatusOK || len(chain) != 3 || !chain[0].Equal(leafOf(t, res.Certificate)) || chain[2].Issuer.CommonName != x2Name {
			t.Fatalf("alternate chain: %d, %d certificates", st, len(chain))
		}
		// It links back to the default.
		if back := linkRel(hdr, "alternate"); len(back) != 1 || back[0] != res.CertURL {
			t.Fatalf("the alternate links to %v, want %s", back, res.CertURL)
		}
	})

	t.Run("lego's preferred chain", func(t *testing.T) {
		req := obtainReq("chain-x2.anvil-e2e.com")
		req.PreferredChain = x2Name
		res := mustObtain(t, client, req)
		chain := readChain(t, res.Certificate)
		if top := chain[len(chain)-1]; top.Issuer.CommonName != x2Name {
			t.Fatalf("lego took the chain ending at %q", top.Issuer.CommonName)
		}
		if err := verifyX2(res.Certificate, "chain-x2.anvil-e2e.com"); err != nil {
			t.Fatalf("the alternate chain does not verify to Root X2: %v", err)
		}
		// Clients that trust X1 are served just as well by it.
		verifyBundle(t, ca, res.Certificate, "chain-x2.anvil-e2e.com")
	})
}
