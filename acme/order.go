package acme

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// NewOrderRequest is the payload of newOrder (RFC 8555 7.4).
type NewOrderRequest struct {
	Identifiers []Identifier `json:"identifiers"`
	NotBefore   string       `json:"notBefore"`
	NotAfter    string       `json:"notAfter"`
	Profile     string       `json:"profile"`
	Replaces    string       `json:"replaces"`
}

// NewOrder checks the identifiers against policy and creates an order with one
// pending authorization per identifier.
func (ca *Core) NewOrder(ctx context.Context, acct *storage.Account, req NewOrderRequest) (*storage.Order, error) {
	if len(req.Identifiers) == 0 {
		return nil, Malformed("an order needs at least one identifier")
	}
	if len(req.Identifiers) > ca.cfg.MaxIdentifiers {
		return nil, RejectedIdentifier("an order may have at most %d identifiers", ca.cfg.MaxIdentifiers)
	}
	if req.NotBefore != "" || req.NotAfter != "" {
		return nil, Malformed("notBefore and notAfter are not supported: validity comes from the profile")
	}
	if req.Profile != "" && !ca.hasProfile(req.Profile) {
		return nil, InvalidProfile("unknown profile %q", req.Profile)
	}
	idents, err := ca.admitIdentifiers(ctx, acct, req.Identifiers)
	if err != nil {
		return nil, err
	}
	if req.Replaces != "" {
		if err := ca.checkReplaces(ctx, acct, req.Replaces, idents); err != nil {
			return nil, err
		}
	}

	now := ca.now()
	order := &storage.Order{
		ID:          newID(),
		AccountID:   acct.ID,
		Status:      StatusPending,
		Identifiers: make([]Identifier, 0, len(idents)),
		Profile:     req.Profile,
		Replaces:    req.Replaces,
		Expires:     now.Add(ca.cfg.OrderLifetime),
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	var authzs []*storage.Authorization
	allReused := true
	reusable := ca.reusableAuthorizations(ctx, acct.ID, idents, now)
	for i, id := range idents {
		order.Identifiers = append(order.Identifiers, id.ident)
		if reused := reusable[i]; reused != nil {
			order.AuthzIDs = append(order.AuthzIDs, reused.ID)
			if reused.Expires.Before(order.Expires) {
				order.Expires = reused.Expires
			}
			continue
		}
		allReused = false
		authz, perr := ca.newAuthorization(acct.ID, id, now)
		if perr != nil {
			return nil, perr
		}
		authzs = append(authzs, authz)
		order.AuthzIDs = append(order.AuthzIDs, authz.ID)
		if authz.Expires.Before(order.Expires) {
			order.Expires = authz.Expires
		}
	}
	if err := ca.store.CreateOrder(ctx, order, authzs); err != nil {
		return nil, ServerInternal(err, "storage error creating the order")
	}
	if allReused {
		// Every authorization was reused and is valid: the order is ready at
		// once (stored as pending; see refreshOrder).
		ready := *order
		ready.Status = StatusReady
		return &ready, nil
	}
	return order, nil
}

// minReuseLeft is how long a reused authorization must still be valid: long
// enough to finish an order started now.
const minReuseLeft = 24 * time.Hour

// reusableAuthorizations finds the account's valid authorization for each
// identifier, when reuse is on: out[i] for idents[i], nil for none. One
// store call for all of them, so that an order's database work does not grow
// with its identifiers. A lookup that fails reuses nothing.
func (ca *Core) reusableAuthorizations(ctx context.Context, accountID string, idents []checkedIdent, now time.Time) []*storage.Authorization {
	out := make([]*storage.Authorization, len(idents))
	if !ca.cfg.ReuseAuthorizations || (ca.cfg.SkipReuse != nil && ca.cfg.SkipReuse()) {
		return out
	}
	lookups := make([]storage.AuthzLookup, len(idents))
	for i, id := range idents {
		lookups[i] = storage.AuthzLookup{
			Identifier: Identifier{Type: id.ident.Type, Value: strings.TrimPrefix(id.ident.Value, "*.")},
			Wildcard:   id.wildcard,
		}
	}
	found, err := ca.store.FindValidAuthorizations(ctx, accountID, lookups, now.Add(minReuseLeft))
	if err != nil || len(found) != len(idents) {
		return out
	}
	return found
}

func (ca *Core) hasProfile(name string) bool {
	for _, p := range ca.issuer.ProfileNames() {
		if p.Name == name {
			return true
		}
	}
	return false
}

type checkedIdent struct {
	ident    Identifier // as it appears in the order (wildcard included)
	wildcard bool
}

// admitIdentifiers is the policy every new order passes, from either front
// end: the identifiers themselves (checkIdentifiers), the names an EAB key
// allows its accounts, and the order rate limits, in that order.
func (ca *Core) admitIdentifiers(ctx context.Context, acct *storage.Account, ids []Identifier) ([]checkedIdent, error) {
	idents, perr := ca.checkIdentifiers(ids)
	if perr != nil {
		return nil, perr
	}
	if err := ca.checkEABPolicy(ctx, acct, idents); err != nil {
		return nil, err
	}
	if err := ca.limitOrders(ctx, acct.ID, idents); err != nil {
		return nil, err
	}
	return idents, nil
}

// checkIdentifiers applies the identifier policy; every refused identifier
// becomes a subproblem.
func (ca *Core) checkIdentifiers(in []Identifier) ([]checkedIdent, *Problem) {
	var out []checkedIdent
	var subs []Subproblem
	seen := map[Identifier]bool{}
	for _, id := range in {
		var c checkedIdent
		var err error
		switch id.Type {
		case "dns":
			var name string
			name, c.wildcard, err = ca.cfg.Policy.CheckDNSName(id.Value)
			c.ident = Identifier{Type: "dns", Value: name}
		case "ip":
			var ip string
			ip, err = ca.cfg.Policy.CheckIP(id.Value)
			c.ident = Identifier{Type: "ip", Value: ip}
		default:
			subs = append(subs, Subproblem{Type: ProblemNS + "unsupportedIdentifier", Detail: "identifier type " + quote(id.Type) + " is not supported", Identifier: id})
			continue
		}
		if err != nil {
			subs = append(subs, Subproblem{Type: ProblemNS + "rejectedIdentifier", Detail: err.Error(), Identifier: id})
			continue
		}
		if seen[c.ident] {
			continue
		}
		seen[c.ident] = true
		out = append(out, c)
	}
	if len(subs) > 0 {
		var p *Problem
		if len(subs) == 1 && strings.HasSuffix(subs[0].Type, "unsupportedIdentifier") {
			p = UnsupportedIdentifier("%s", subs[0].Detail)
		} else if len(subs) == 1 {
			p = RejectedIdentifier("%s", subs[0].Detail)
		} else {
			p = RejectedIdentifier("%d identifiers were refused", len(subs))
		}
		p.Subproblems = subs
		return nil, p
	}
	return out, nil
}

func quote(s string) string { return `"` + s + `"` }

// newAuthorization makes a pending authorization with the challenges that can
// prove this identifier: a wildcard only through dns-01 (RFC 8555 7.1.3), an IP
// address through http-01 or tls-alpn-01 but not dns-01 (RFC 8738 7).
func (ca *Core) newAuthorization(accountID string, id checkedIdent, now time.Time) (*storage.Authorization, *Problem) {
	authz := &storage.Authorization{
		ID:         newID(),
		AccountID:  accountID,
		Identifier: Identifier{Type: id.ident.Type, Value: strings.TrimPrefix(id.ident.Value, "*.")},
		Wildcard:   id.wildcard,
		Status:     StatusPending,
		Expires:    now.Add(ca.cfg.PendingAuthzLifetime),
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	token := newToken() // one token for all of an authorization's challenges, as Boulder does
	for _, t := range ca.cfg.ChallengeTypes {
		switch {
		case id.wildcard && t != DNS01:
			continue
		case id.ident.Type == "ip" && t == DNS01:
			continue
		}
		authz.Challenges = append(authz.Challenges, &storage.Challenge{
			ID: newID(), AuthzID: authz.ID, Type: t, Token: token, Status: StatusPending, UpdatedAt: now,
		})
	}
	if len(authz.Challenges) == 0 {
		return nil, RejectedIdentifier("no enabled challenge type can validate %s", id.ident.Value)
	}
	return authz, nil
}

// Order returns an account's order with its status brought up to date.
func (ca *Core) Order(ctx context.Context, acct *storage.Account, id string) (*storage.Order, error) {
	o, _, err := ca.orderAndAuthorizations(ctx, acct, id)
	return o, err
}

// orderAndAuthorizations is Order, also returning the order's authorizations
// when bringing its status up to date read them (nil otherwise).
func (ca *Core) orderAndAuthorizations(ctx context.Context, acct *storage.Account, id string) (*storage.Order, []*storage.Authorization, error) {
	o, err := ca.store.GetOrder(ctx, id)
	if err != nil {
		return nil, nil, storeErr(err, "order")
	}
	if o.AccountID != acct.ID {
		return nil, nil, Unauthorized("order %s belongs to another account", id)
	}
	return ca.refreshOrder(ctx, o)
}

// refreshOrder derives a pending order's status from its authorizations and
// its expiry. "ready" is never stored: it is "pending" with every authorization
// valid, so reading an order writes nothing in the common case, and finalize
// moves the stored "pending" to "processing". A failure (an authorization gone
// bad, the order expired) is final and is written back conditionally.
func (ca *Core) refreshOrder(ctx context.Context, o *storage.Order) (*storage.Order, []*storage.Authorization, error) {
	if o.Status != StatusPending && o.Status != StatusReady {
		return o, nil, nil
	}
	now := ca.now()
	want := StatusReady
	var errProblem *Problem
	var authzs []*storage.Authorization
	if now.After(o.Expires) {
		want, errProblem = StatusInvalid, Malformed("the order expired")
	} else {
		var err error
		authzs, err = ca.store.GetAuthorizations(ctx, o.AuthzIDs)
		if err != nil {
			return nil, nil, ServerInternal(err, "storage error reading authorizations")
		}
		for _, a := range authzs {
			status := a.Status
			if (status == StatusPending || status == StatusValid) && now.After(a.Expires) {
				status = StatusExpired
			}
			switch status {
			case StatusValid:
			case StatusPending:
				want = StatusPending
			default:
				want = StatusInvalid
				errProblem = Unauthorized("authorization for %s is %s", a.Identifier.Value, status)
			}
			if want == StatusInvalid {
				break
			}
		}
	}
	derived := *o
	derived.Status = want
	if want != StatusInvalid {
		return &derived, authzs, nil
	}
	derived.UpdatedAt = now
	derived.Error = problemJSON(errProblem)
	if err := ca.store.UpdateOrder(ctx, &derived, o.Status); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			// Someone else moved it (a finalize won): read again.
			fresh, gerr := ca.store.GetOrder(ctx, o.ID)
			if gerr != nil {
				return nil, nil, storeErr(gerr, "order")
			}
			return fresh, nil, nil
		}
		return nil, nil, ServerInternal(err, "storage error updating the order")
	}
	return &derived, nil, nil
}

// Authorization returns an account's authorization, marking a pending one
// that has passed its expiry as expired.
func (ca *Core) Authorization(ctx context.Context, acct *storage.Account, id string) (*storage.Authorization, error) {
	a, err := ca.store.GetAuthorization(ctx, id)
	if err != nil {
		return nil, storeErr(err, "authorization")
	}
	if a.AccountID != acct.ID {
		return nil, Unauthorized("authorization %s belongs to another account", id)
	}
	if (a.Status == StatusPending || a.Status == StatusValid) && ca.now().After(a.Expires) {
		from := a.Status
		a.Status = StatusExpired
		if err := ca.store.UpdateAuthorization(ctx, a, from); err != nil && !errors.Is(err, storage.ErrConflict) {
			return nil, ServerInternal(err, "storage error expiring the authorization")
		}
	}
	return a, nil
}

// DeactivateAuthorization deactivates a pending or valid authorization (RFC
// 8555 7.5.2).
func (ca *Core) DeactivateAuthorization(ctx context.Context, acct *storage.Account, id string) (*storage.Authorization, error) {
	a, err := ca.Authorization(ctx, acct, id)
	if err != nil {
		return nil, err
	}
	if a.Status != StatusPending && a.Status != StatusValid {
		return nil, Malformed("authorization is %s; only pending or valid ones can be deactivated", a.Status)
	}
	from := a.Status
	a.Status = StatusDeactivated
	a.UpdatedAt = ca.now()
	if err := ca.store.UpdateAuthorization(ctx, a, from); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, Malformed("authorization changed meanwhile; fetch it again")
		}
		return nil, ServerInternal(err, "storage error deactivating the authorization")
	}
	return a, nil
}

// Authorizations loads an order's authorizations in order.
func (ca *Core) Authorizations(ctx context.Context, ids []string) ([]*storage.Authorization, error) {
	as, err := ca.store.GetAuthorizations(ctx, ids)
	if err != nil {
		return nil, ServerInternal(err, "storage error reading authorizations")
	}
	return as, nil
}
