package acme

import (
	"context"

	"github.com/anvil-pki/anvil/storage"
)

// PreAuthorize creates a pending authorization for one identifier outside an
// order (RFC 8555 7.4.1), where the configuration allows it.
func (ca *Core) PreAuthorize(ctx context.Context, acct *storage.Account, ident Identifier) (*storage.Authorization, error) {
	if !ca.cfg.PreAuthorization {
		return nil, Malformed("pre-authorization is not offered here")
	}
	return ca.preAuthorize(ctx, acct, ident)
}

// preAuthorize is PreAuthorize without the configuration check: the ACME v1
// front end (LegacyAuthorize) has its own switch.
func (ca *Core) preAuthorize(ctx context.Context, acct *storage.Account, ident Identifier, extraTypes ...string) (*storage.Authorization, error) {
	checked, perr := ca.checkIdentifiers([]Identifier{ident})
	if perr != nil {
		return nil, perr
	}
	if checked[0].wildcard {
		return nil, RejectedIdentifier("a wildcard cannot be pre-authorized (RFC 8555 7.4.1)")
	}
	if err := ca.checkEABPolicy(ctx, acct, checked); err != nil {
		return nil, err
	}
	now := ca.now()
	authz, perr := ca.newAuthorization(acct.ID, checked[0], now)
	if perr != nil {
		return nil, perr
	}
	for _, t := range extraTypes {
		// A token of its own: the challenge's file is the token itself, so a
		// shared one would sit at the same path as http-01's.
		authz.Challenges = append(authz.Challenges, &storage.Challenge{
			ID: newID(), AuthzID: authz.ID, Type: t, Token: newToken(), Status: StatusPending, UpdatedAt: now,
		})
	}
	if err := ca.store.CreateAuthorization(ctx, authz); err != nil {
		return nil, ServerInternal(err, "storage error creating the authorization")
	}
	return authz, nil
}
