package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"

	legoacme "github.com/go-acme/lego/v5/acme"
)

// ordersPage is one page of an account's orders list.
type ordersPage struct {
	Orders []string `json:"orders"`
}

// listOrders follows an account's orders list from its first page through
// Link rel="next", returning every page.
func (c *rawClient) listOrders(url string) [][]string {
	c.t.Helper()
	var pages [][]string
	for url != "" {
		if len(pages) > 100 {
			c.t.Fatal("the orders list does not end")
		}
		st, body, h := c.send(url, c.jws(c.header(url), nil))
		if st != http.StatusOK {
			c.t.Fatalf("orders list %s: %d %s", url, st, body)
		}
		var p ordersPage
		if err := json.Unmarshal(body, &p); err != nil || p.Orders == nil {
			c.t.Fatalf("orders list %s: %s", url, body)
		}
		pages = append(pages, p.Orders)
		next := linkRel(h, "next")
		if len(next) > 1 {
			c.t.Fatalf("%d next links", len(next))
		}
		url = ""
		if len(next) == 1 {
			url = next[0]
		}
	}
	return pages
}

// accountOrdersURL reads the orders URL from the account object.
func (c *rawClient) accountOrdersURL() string {
	c.t.Helper()
	st, body := c.postAsGet(c.kid)
	if st != http.StatusOK {
		c.t.Fatalf("account: %d %s", st, body)
	}
	u := jsonField(c.t, body, "orders")
	if u == "" {
		c.t.Fatalf("account object without orders: %s", body)
	}
	return u
}

// An account's orders list (RFC 8555 7.1.2.1), two to a page here, and
// pre-authorization (newAuthz, RFC 8555 7.4.1), on a CA that offers it.
func TestOrdersListAndNewAuthz(t *testing.T) {
	ca := NewCA(t, WithACME("orders_per_page: 2\npre_authorization: true"))

	t.Run("orders list pages", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		url := rc.accountOrdersURL()
		if pages := rc.listOrders(url); len(pages) != 1 || len(pages[0]) != 0 {
			t.Fatalf("a new account's orders: %v", pages)
		}
		var created []string
		for i := range 5 {
			u, _ := rc.newOrder(nil, fmt.Sprintf("list%d.anvil-e2e.com", i))
			created = append(created, u)
		}
		pages := rc.listOrders(url)
		var sizes []int
		var all []string
		for _, p := range pages {
			sizes = append(sizes, len(p))
			all = append(all, p...)
		}
		if !slices.Equal(sizes, []int{2, 2, 1}) {
			t.Fatalf("page sizes %v, want [2 2 1]", sizes)
		}
		// Newest first, each order once.
		if all[0] != created[4] {
			t.Fatalf("first listed %s, want the newest %s", all[0], created[4])
		}
		slices.Sort(all)
		slices.Sort(created)
		if !slices.Equal(all, created) {
			t.Fatalf("listed %v, created %v", all, created)
		}
	})

	t.Run("another account's orders list", func(t *testing.T) {
		a := newRawClient(t, ca, newKey(t))
		a.register()
		b := newRawClient(t, ca, newKey(t))
		b.register()
		url := a.accountOrdersURL()
		st, body, h := b.send(url, b.jws(b.header(url), nil))
		expectProblem(t, st, body, h, http.StatusForbidden, "unauthorized")
	})

	t.Run("a forged cursor", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		url := rc.accountOrdersURL() + "?cursor=not-a-cursor"
		st, body, h := rc.send(url, rc.jws(rc.header(url), nil))
		expectProblem(t, st, body, h, http.StatusBadRequest, "malformed")
	})

	t.Run("newAuthz", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		newAuthz, _ := rc.dir["newAuthz"].(string)
		if newAuthz == "" {
			t.Fatalf("the directory offers no newAuthz: %v", rc.dir)
		}
		st, body, h := rc.post(newAuthz, map[string]any{"identifier": identifiers("preauth.anvil-e2e.com")[0]})
		if st != http.StatusCreated || h.Get("Location") == "" {
			t.Fatalf("newAuthz: %d %s", st, body)
		}
		authzURL := h.Get("Location")
		a := rc.authz(authzURL)
		if a.Status != "pending" || a.Identifier.Value != "preauth.anvil-e2e.com" {
			t.Fatalf("pre-authorization: %+v", a)
		}
		ch := a.challenge(t, "http-01")
		ca.challengeServer(t).set(ch.Token, ch.Token+"."+rc.thumbprint())
		if got := rc.respond(ch); got.Status != "valid" {
			t.Fatalf("challenge: %+v", got)
		}
		// The order for the name uses the pre-authorization and is ready.
		orderURL, o := rc.newOrder(nil, "preauth.anvil-e2e.com")
		if !slices.Equal(o.Authorizations, []string{authzURL}) {
			t.Fatalf("order authorizations %v, want the pre-authorization %s", o.Authorizations, authzURL)
		}
		o = rc.order(orderURL)
		if o.Status != "ready" {
			t.Fatalf("order for a pre-authorized name is %s", o.Status)
		}
		leaf := rc.finalizeOrder(o, "preauth.anvil-e2e.com")
		if !slices.Equal(leaf.DNSNames, []string{"preauth.anvil-e2e.com"}) {
			t.Fatalf("leaf names %v", leaf.DNSNames)
		}
		// The account's orders are the one it made: whatever the server
		// keeps to hold a pre-authorization is not an order of the client's.
		pages := rc.listOrders(rc.accountOrdersURL())
		if len(pages) != 1 || !slices.Equal(pages[0], []string{orderURL}) {
			for _, p := range pages {
				for _, u := range p {
					if u != orderURL {
						st, body := rc.postAsGet(u)
						t.Logf("listed order the client never made: %s: %d %s", u, st, body)
					}
				}
			}
			t.Fatalf("orders list after a pre-authorization and one order: %v, want [%s]", pages, orderURL)
		}
	})

	t.Run("newAuthz refuses a wildcard", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		rc.register()
		st, body, h := rc.post(rc.url("newAuthz"), map[string]any{"identifier": identifiers("*.preauth.anvil-e2e.com")[0]})
		expectProblem(t, st, body, h, http.StatusBadRequest, "rejectedIdentifier")
	})
}

// Rate limits: new orders per account, new accounts per IP address, failed
// validations per name, each answered 429 rateLimited with a Retry-After.
func TestRateLimits(t *testing.T) {
	ca := NewCA(t, WithACME(`rate_limits:
  new_orders_per_account: {count: 2, period: 1h}
  new_accounts_per_ip: {count: 3, period: 1h}
  failed_validations_per_name: {count: 1, period: 1h}`))
	expectLimited := func(t *testing.T, st int, body []byte, h http.Header) {
		t.Helper()
		expectProblem(t, st, body, h, http.StatusTooManyRequests, "rateLimited")
		if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s <= 0 || s > 3600 {
			t.Fatalf("Retry-After %q, want seconds within the 1h period", h.Get("Retry-After"))
		}
	}
	// Three accounts, all this test may make from 127.0.0.1.
	a := newRawClient(t, ca, newKey(t))
	a.register()
	b := newRawClient(t, ca, newKey(t))
	b.register()
	c := newRawClient(t, ca, newKey(t))
	c.register()

	t.Run("new orders per account", func(t *testing.T) {
		a := a.as(t)
		a.newOrder(nil, "limit1.anvil-e2e.com")
		a.newOrder(nil, "limit2.anvil-e2e.com")
		st, body, h := a.post(a.url("newOrder"), map[string]any{"identifiers": identifiers("limit3.anvil-e2e.com")})
		expectLimited(t, st, body, h)
		// lego, for the same account, reads the wait it is told.
		client, user := legoClient(t, ca, a.key)
		acct, err := client.Registration.ResolveAccountByKey(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		user.reg = acct
		_, err = client.Certificate.Obtain(t.Context(), obtainReq("limit4.anvil-e2e.com"))
		expectLegoProblem(t, err, "rateLimited")
		var rl *legoacme.RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter <= 0 {
			t.Fatalf("lego read no Retry-After from the rateLimited answer: %v", err)
		}
		// Other accounts are not held back by it.
		b.as(t).newOrder(nil, "limit1.anvil-e2e.com")
	})

	t.Run("failed validations per name", func(t *testing.T) {
		c := c.as(t)
		_, o := c.newOrder(nil, "fails.anvil-e2e.com")
		ch := c.authz(o.Authorizations[0]).challenge(t, "http-01")
		ca.challengeServer(t) // answers 404: nothing is published for the token
		if got := c.respond(ch); got.Status != "invalid" {
			t.Fatalf("challenge with nothing published: %+v", got)
		}
		// The name is now held back, for every account...
		st, body, h := c.post(c.url("newOrder"), map[string]any{"identifiers": identifiers("fails.anvil-e2e.com")})
		expectLimited(t, st, body, h)
		st, body, h = b.as(t).post(b.url("newOrder"), map[string]any{"identifiers": identifiers("www.anvil-e2e.com", "fails.anvil-e2e.com")})
		expectLimited(t, st, body, h)
		// ...and other names are not.
		c.newOrder(nil, "succeeds.anvil-e2e.com")
	})

	t.Run("new accounts per IP address", func(t *testing.T) {
		d := newRawClient(t, ca, newKey(t))
		st, body, h := d.post(d.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
		expectLimited(t, st, body, h)
		// An existing account is still found by its key.
		a := a.as(t)
		st, body, _ = a.send(a.url("newAccount"), a.jws(map[string]any{"alg": "ES256", "nonce": a.nonce(), "url": a.url("newAccount"), "jwk": a.jwk()},
			[]byte(`{"onlyReturnExisting":true}`)))
		if st != http.StatusOK {
			t.Fatalf("existing account by key: %d %s", st, body)
		}
	})
}
