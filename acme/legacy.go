package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/storage"
)

// The ACME v1 flow (draft-barnes-acme, as Boulder served it) on this core.
// A v1 client proves control of names with stand-alone authorizations, then
// asks for a certificate with a CSR alone. Here that request becomes an
// implicit order for exactly the CSR's names, made of the account's valid
// authorizations, and goes through Finalize like any order: the same CSR
// checks, CAA recheck, profile, lint, ledger and HSM, and the same "one order,
// one certificate" state change.

// LegacyAuthorize creates a pending authorization for one identifier, for
// the v1 new-authz resource, with simpleHttps besides the enabled challenge
// types when Config.LegacySimpleHTTPS. It does not depend on
// Config.PreAuthorization: the v1 front end has its own switch.
func (ca *Core) LegacyAuthorize(ctx context.Context, acct *storage.Account, ident Identifier) (*storage.Authorization, error) {
	if ca.cfg.LegacySimpleHTTPS {
		return ca.preAuthorize(ctx, acct, ident, SimpleHTTPS)
	}
	return ca.preAuthorize(ctx, acct, ident)
}

// SimpleHTTPS is the challenge of draft-barnes-acme-01: the applicant serves
// the token over HTTPS at /.well-known/acme-challenge/, and the CA fetches it
// without checking the certificate. It binds no account key (later drafts
// added key authorizations for that), so it is offered only to v1 clients,
// and only when configured.
const SimpleHTTPS = "simpleHttps"

// LegacyAuthorization returns an authorization by its ID alone: ACME v1
// clients poll authorizations with unauthenticated GETs. The ID is 128
// random bits, the capability Boulder's v1 API relied on too.
func (ca *Core) LegacyAuthorization(ctx context.Context, id string) (*storage.Authorization, error) {
	a, err := ca.store.GetAuthorization(ctx, id)
	if err != nil {
		return nil, storeErr(err, "authorization")
	}
	return ca.Authorization(ctx, &storage.Account{ID: a.AccountID}, id)
}

// LegacyChallenge returns a challenge and its authorization by the
// challenge's ID alone, for v1 GETs.
func (ca *Core) LegacyChallenge(ctx context.Context, id string) (*storage.Challenge, *storage.Authorization, error) {
	ch, err := ca.store.GetChallenge(ctx, id)
	if err != nil {
		return nil, nil, storeErr(err, "challenge")
	}
	a, err := ca.LegacyAuthorization(ctx, ch.AuthzID)
	if err != nil {
		return nil, nil, err
	}
	return ch, a, nil
}

// LegacyIssue is v1 new-cert: every name of the CSR needs a valid
// authorization of acct; authzIDs, the authorizations the client lists,
// must each be acct's and valid. It creates an order for the CSR's names
// made of those authorizations and finalizes it. Each request makes its own
// order, so a request issues at most one certificate; a replayed request is
// stopped earlier, by its nonce.
func (ca *Core) LegacyIssue(ctx context.Context, acct *storage.Account, accountKey *jose.JSONWebKey, csrDER []byte, authzIDs []string) (*storage.Order, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, BadCSR("CSR does not parse: %v", err)
	}
	if len(authzIDs) > ca.cfg.MaxIdentifiers {
		return nil, Malformed("at most %d authorizations may be listed", ca.cfg.MaxIdentifiers)
	}
	for _, id := range authzIDs {
		a, err := ca.Authorization(ctx, acct, id)
		if err != nil {
			var p *Problem
			if errors.As(err, &p) && p.Condition == Missing {
				return nil, Unauthorized("authorization %s does not exist", id)
			}
			return nil, err
		}
		if a.Status != StatusValid {
			return nil, Unauthorized("authorization %s for %s is %s, not valid", id, a.Identifier.Value, a.Status)
		}
	}
	var want []Identifier
	for _, n := range csr.DNSNames {
		want = append(want, Identifier{Type: "dns", Value: n})
	}
	for _, ip := range csr.IPAddresses {
		want = append(want, Identifier{Type: "ip", Value: ip.String()})
	}
	if len(want) == 0 {
		return nil, BadCSR("the CSR names no identifiers")
	}
	if len(want) > ca.cfg.MaxIdentifiers {
		return nil, RejectedIdentifier("a certificate may have at most %d names", ca.cfg.MaxIdentifiers)
	}
	idents, err := ca.admitIdentifiers(ctx, acct, want)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	order := &storage.Order{
		ID:        newID(),
		AccountID: acct.ID,
		Status:    StatusPending,
		Expires:   now.Add(ca.cfg.OrderLifetime),
		CreatedAt: now,
		UpdatedAt: now,
	}
	for _, id := range idents {
		if id.wildcard {
			return nil, RejectedIdentifier("ACME v1 has no wildcard certificates: use the RFC 8555 API for %s", id.ident.Value)
		}
		// Only this account's valid authorizations count, as at finalize.
		a, err := ca.store.FindValidAuthorization(ctx, acct.ID, id.ident, false, now)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, Unauthorized("the account holds no valid authorization for %s", id.ident.Value)
			}
			return nil, ServerInternal(err, "storage error finding authorizations")
		}
		order.Identifiers = append(order.Identifiers, id.ident)
		if !slices.Contains(order.AuthzIDs, a.ID) {
			order.AuthzIDs = append(order.AuthzIDs, a.ID)
		}
		if a.Expires.Before(order.Expires) {
			order.Expires = a.Expires
		}
	}
	if err := ca.store.CreateOrder(ctx, order, nil); err != nil {
		return nil, ServerInternal(err, "storage error creating the order")
	}
	o, err := ca.Finalize(ctx, acct, accountKey, order.ID, csrDER)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// LegacyProblemType turns an RFC 8555 error type into its ACME v1 spelling
// (urn:acme:error:), which v1 clients match on.
func LegacyProblemType(t string) string {
	if rest, ok := strings.CutPrefix(t, ProblemNS); ok {
		return "urn:acme:error:" + rest
	}
	return t
}
