package e2e

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// keyChangeJWS is the inner JWS of a key rollover (RFC 8555 7.3.5): signed by
// the new key, which it carries in jwk, for the keyChange URL, with no nonce,
// over the account URL and the account's current key.
func keyChangeJWS(t *testing.T, ca *CA, account string, oldKey, next crypto.Signer) json.RawMessage {
	t.Helper()
	inner := newRawClient(t, ca, next)
	old := newRawClient(t, ca, oldKey)
	url := inner.url("keyChange")
	payload, _ := json.Marshal(map[string]any{"account": account, "oldKey": old.jwk()})
	return inner.jws(map[string]any{"alg": "ES256", "jwk": inner.jwk(), "url": url}, payload)
}

// Accounts and authorizations over their life, with lego and by hand: key
// rollover (and its races), account deactivation, authorization deactivation
// and reuse.
func TestAccounts(t *testing.T) {
	ca := NewCA(t)
	ctx := context.Background()

	t.Run("key rollover", func(t *testing.T) {
		oldKey, rolledKey := newKey(t), newKey(t)
		client, user := legoClient(t, ca, oldKey)
		register(t, client, user)
		before := mustObtain(t, client, obtainReq("before-roll.anvil-e2e.com"))
		if err := client.Registration.KeyRollover(ctx, rolledKey); err != nil {
			t.Fatalf("key rollover: %v", err)
		}
		// lego now signs with the new key, and the account goes on: it
		// orders, and it still owns what it had (it may revoke it).
		mustObtain(t, client, obtainReq("after-roll.anvil-e2e.com"))
		if err := client.Certificate.Revoke(ctx, before.Certificate); err != nil {
			t.Fatalf("revoke a certificate issued before the rollover: %v", err)
		}
		// The new key finds the account; the old key finds nothing.
		byNew, _ := legoClient(t, ca, rolledKey)
		acct, err := byNew.Registration.ResolveAccountByKey(ctx)
		if err != nil || acct.Location != user.reg.Location {
			t.Fatalf("the new key resolves to %v (%v), want %s", acct, err, user.reg.Location)
		}
		byOld, _ := legoClient(t, ca, oldKey)
		_, err = byOld.Registration.ResolveAccountByKey(ctx)
		expectLegoProblem(t, err, "accountDoesNotExist")
		// A request with the account's URL signed by the old key is refused.
		rc := rawAs(t, ca, oldKey, user.reg.Location)
		if st, body := rc.postAsGet(user.reg.Location); st < 400 {
			t.Fatalf("the old key still signs for the account: %d %s", st, body)
		}
	})

	t.Run("rollover to a key that is already an account's", func(t *testing.T) {
		a := newRawClient(t, ca, newKey(t))
		a.register()
		b := newRawClient(t, ca, newKey(t))
		b.register()
		st, body, h := a.post(a.url("keyChange"), keyChangeJWS(t, ca, a.kid, a.key, b.key))
		if st != http.StatusConflict || h.Get("Location") != b.kid {
			t.Fatalf("rollover to another account's key: %d, Location %q (want 409 and %s): %s", st, h.Get("Location"), b.kid, body)
		}
		// Nothing changed: both accounts keep their keys.
		if st, body := a.postAsGet(a.kid); st != http.StatusOK {
			t.Fatalf("account A after the refused rollover: %d %s", st, body)
		}
		if st, body := b.postAsGet(b.kid); st != http.StatusOK {
			t.Fatalf("account B after the refused rollover: %d %s", st, body)
		}
		// lego, asked for the same, reports the conflict.
		client, user := legoClient(t, ca, newKey(t))
		register(t, client, user)
		err := client.Registration.KeyRollover(ctx, b.key)
		if p := legoProblem(t, err); p.HTTPStatus != http.StatusConflict {
			t.Fatalf("lego rollover to a taken key: %d %s", p.HTTPStatus, p.Detail)
		}
	})

	t.Run("accounts racing to one new key", func(t *testing.T) {
		// One key, one account: of accounts rolling over to the same new key
		// at once, exactly one gets it; the others are told whose it is.
		target := newKey(t)
		var urls []string
		var bodies [][]byte
		var clients []*rawClient
		for range 8 {
			rc := newRawClient(t, ca, newKey(t))
			rc.register()
			clients = append(clients, rc)
			urls = append(urls, rc.url("keyChange"))
			inner := keyChangeJWS(t, ca, rc.kid, rc.key, target)
			bodies = append(bodies, rc.jws(rc.header(rc.url("keyChange")), inner))
		}
		statuses, locations := clients[0].race(urls, bodies)
		winner := -1
		for i, st := range statuses {
			switch st {
			case http.StatusOK:
				if winner >= 0 {
					t.Fatalf("accounts %d and %d both rolled over to the same key", winner, i)
				}
				winner = i
			case http.StatusConflict:
			default:
				t.Fatalf("rollover %d: status %d", i, st)
			}
		}
		if winner < 0 {
			t.Fatalf("no rollover won: %v", statuses)
		}
		for i, st := range statuses {
			if st == http.StatusConflict && locations[i] != clients[winner].kid {
				t.Fatalf("loser %d was pointed at %q, want the winner %s", i, locations[i], clients[winner].kid)
			}
		}
		byKey, _ := legoClient(t, ca, target)
		acct, err := byKey.Registration.ResolveAccountByKey(ctx)
		if err != nil || acct.Location != clients[winner].kid {
			t.Fatalf("the new key resolves to %v (%v), want the winner %s", acct, err, clients[winner].kid)
		}
	})

	t.Run("rollover naming another account is refused", func(t *testing.T) {
		a := newRawClient(t, ca, newKey(t))
		a.register()
		b := newRawClient(t, ca, newKey(t))
		b.register()
		// A signs the outer JWS, but the inner payload names B.
		st, body, h := a.post(a.url("keyChange"), keyChangeJWS(t, ca, b.kid, b.key, newKey(t)))
		expectProblem(t, st, body, h, http.StatusBadRequest, "malformed")
	})

	t.Run("account deactivation", func(t *testing.T) {
		key := newKey(t)
		client, user := legoClient(t, ca, key)
		register(t, client, user)
		if err := client.Registration.DeleteRegistration(ctx); err != nil {
			t.Fatalf("deactivate: %v", err)
		}
		// Every later request of the account is unauthorized (RFC 8555 7.3.6).
		_, err := client.Certificate.Obtain(ctx, obtainReq("deactivated.anvil-e2e.com"))
		if p := expectLegoProblem(t, err, "unauthorized"); p.HTTPStatus != http.StatusForbidden {
			t.Fatalf("status %d", p.HTTPStatus)
		}
		rc := rawAs(t, ca, key, user.reg.Location)
		st, body, h := rc.send(user.reg.Location, rc.jws(rc.header(user.reg.Location), nil))
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		// Nor does the key make a new account.
		rc.kid = ""
		st, body, h = rc.post(rc.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("deactivating a pending authorization", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		orderURL, o := rc.newOrder(nil, "deact-pending.anvil-e2e.com")
		authzURL := o.Authorizations[0]
		st, body, _ := rc.post(authzURL, map[string]string{"status": "deactivated"})
		if st != http.StatusOK || jsonField(t, body, "status") != "deactivated" {
			t.Fatalf("deactivate: %d %s", st, body)
		}
		if got := rc.order(orderURL); got.Status != "invalid" {
			t.Fatalf("order with a deactivated authorization is %s", got.Status)
		}
		// Answering its challenge now proves nothing.
		a := rc.authz(authzURL)
		ch := a.challenge(t, "http-01")
		ca.challengeServer(t).set(ch.Token, ch.Token+"."+rc.thumbprint())
		rc.post(ch.URL, map[string]any{})
		if a := rc.authz(authzURL); a.Status != "deactivated" {
			t.Fatalf("authorization is %s after its challenge was answered", a.Status)
		}
		// And it cannot be deactivated twice.
		st, body, h := rc.post(authzURL, map[string]string{"status": "deactivated"})
		expectProblem(t, st, body, h, http.StatusBadRequest, "malformed")
	})

	t.Run("deactivating a valid authorization", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		orderURL, order := rc.readyOrder("deact-valid.anvil-e2e.com")
		authzURL := order["authorizations"].([]any)[0].(string)
		st, body, _ := rc.post(authzURL, map[string]string{"status": "deactivated"})
		if st != http.StatusOK || jsonField(t, body, "status") != "deactivated" {
			t.Fatalf("deactivate: %d %s", st, body)
		}
		if got := rc.order(orderURL); got.Status != "invalid" {
			t.Fatalf("ready order whose authorization was deactivated is %s", got.Status)
		}
		st, body, h := rc.post(order["finalize"].(string), csrFor(t, "deact-valid.anvil-e2e.com"))
		expectProblem(t, st, body, h, http.StatusForbidden, "orderNotReady")
		// A new order for the name needs a new validation.
		_, o := rc.newOrder(nil, "deact-valid.anvil-e2e.com")
		if o.Status != "pending" || slices.Contains(o.Authorizations, authzURL) {
			t.Fatalf("new order after deactivation: %s with %v", o.Status, o.Authorizations)
		}
	})

	t.Run("only an authorization's account may deactivate it", func(t *testing.T) {
		a := newRawClient(t, ca, newKey(t))
		a.register()
		b := newRawClient(t, ca, newKey(t))
		b.register()
		_, o := a.newOrder(nil, "deact-other.anvil-e2e.com")
		st, body, h := b.post(o.Authorizations[0], map[string]string{"status": "deactivated"})
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
		if got := a.authz(o.Authorizations[0]); got.Status != "pending" {
			t.Fatalf("authorization is %s", got.Status)
		}
	})

	t.Run("lego relinquishes its authorizations", func(t *testing.T) {
		// AlwaysDeactivateAuthorizations: the valid authorization is
		// deactivated after issuance, so that the next order validates anew.
		key := newKey(t)
		client, user := legoClient(t, ca, key)
		register(t, client, user)
		req := obtainReq("relinquish.anvil-e2e.com")
		req.AlwaysDeactivateAuthorizations = true
		mustObtain(t, client, req)
		rc := rawAs(t, ca, key, user.reg.Location)
		_, o := rc.newOrder(nil, "relinquish.anvil-e2e.com")
		if o.Status != "pending" {
			t.Fatalf("order after lego deactivated its authorization is %s", o.Status)
		}
	})

	t.Run("newAuthz is not offered unless configured", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		if u, ok := rc.dir["newAuthz"]; ok {
			t.Fatalf("the directory offers newAuthz at %v", u)
		}
		st, body, h := rc.post(ca.BaseURL+"/acme/new-authz", map[string]any{"identifier": identifiers("preauth-off.anvil-e2e.com")[0]})
		expectProblem(t, st, body, h, http.StatusBadRequest, "malformed")
	})

	t.Run("a valid authorization is reused by the next order", func(t *testing.T) {
		// The configuration's reuse_authorizations defaults to on: a second
		// order for a name the account validated minutes ago is ready at once.
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		_, first := rc.readyOrder("reuse.anvil-e2e.com")
		orderURL, o := rc.newOrder(nil, "reuse.anvil-e2e.com")
		if len(o.Authorizations) != 1 || o.Authorizations[0] != first["authorizations"].([]any)[0] {
			t.Fatalf("second order for a validated name has authorizations %v, the first had %v", o.Authorizations, first["authorizations"])
		}
		// RFC 8555 7.1.6: an order whose authorizations are all valid is
		// ready, and the newOrder response is where a client first reads it.
		if o.Status != "ready" {
			t.Errorf("newOrder answered status %q for an order whose only authorization is valid; want ready", o.Status)
		}
		if got := rc.order(orderURL); got.Status != "ready" {
			t.Errorf("the order reads %q; want ready", got.Status)
		}
	})
}
