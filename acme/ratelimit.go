package acme

import (
	"context"
	"time"
)

// Limit allows Count events per Period; a zero Count turns it off.
type Limit struct {
	Count  int
	Period time.Duration
}

// RateLimits protect the CA and its HSM from one client's flood. They are
// counted from storage, so they hold across front ends.
type RateLimits struct {
	NewOrdersPerAccount      Limit
	NewAccountsPerIP         Limit
	FailedValidationsPerName Limit
}

func (l Limit) on() bool { return l.Count > 0 && l.Period > 0 }

func (ca *Core) limitAccounts(ctx context.Context, ip string) error {
	l := ca.cfg.RateLimits.NewAccountsPerIP
	if !l.on() || ip == "" {
		return nil
	}
	n, err := ca.store.CountAccountsByIP(ctx, ip, ca.now().Add(-l.Period))
	if err != nil {
		return ServerInternal(err, "storage error checking a rate limit")
	}
	if n >= l.Count {
		ca.rateLimited("new_accounts_per_ip")
		return RateLimited(l.Period, "too many new accounts from %s: at most %d per %s", ip, l.Count, l.Period)
	}
	return nil
}

func (ca *Core) limitOrders(ctx context.Context, accountID string, idents []checkedIdent) error {
	now := ca.now()
	if l := ca.cfg.RateLimits.NewOrdersPerAccount; l.on() {
		n, err := ca.store.CountOrders(ctx, accountID, now.Add(-l.Period))
		if err != nil {
			return ServerInternal(err, "storage error checking a rate limit")
		}
		if n >= l.Count {
			ca.rateLimited("new_orders_per_account")
			return RateLimited(l.Period, "too many new orders: at most %d per %s per account", l.Count, l.Period)
		}
	}
	if l := ca.cfg.RateLimits.FailedValidationsPerName; l.on() {
		// One store call for every identifier of the order.
		bases := make([]Identifier, len(idents))
		for i, id := range idents {
			bases[i] = Identifier{Type: id.ident.Type, Value: id.ident.Value}
			if id.wildcard {
				bases[i].Value = bases[i].Value[2:]
			}
		}
		counts, err := ca.store.CountFailedAuthorizationsEach(ctx, bases, now.Add(-l.Period))
		if err != nil {
			return ServerInternal(err, "storage error checking a rate limit")
		}
		for i, n := range counts {
			if n >= l.Count {
				ca.rateLimited("failed_validations_per_name")
				return RateLimited(l.Period, "too many failed validations for %s: at most %d per %s", bases[i].Value, l.Count, l.Period)
			}
		}
	}
	return nil
}

// rateLimited tells Config.OnRateLimited which limit refused a request.
func (ca *Core) rateLimited(limit string) {
	if ca.cfg.OnRateLimited != nil {
		ca.cfg.OnRateLimited(limit)
	}
}
