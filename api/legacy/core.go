package legacy

import (
	"context"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
)

// Core is what the v1 front end needs of the protocol core, *acme.Core
// in production: the same core as package api's, seen through the calls ACME
// v1 makes. It is declared here, where it is used, so that what this front end
// may ask of the core is written down in one place.
type Core interface {
	TermsOfService() string
	AccountByKeyID(ctx context.Context, keyID string) (*storage.Account, error)
	NewAccount(ctx context.Context, key *jose.JSONWebKey, req acme.NewAccountRequest, remoteIP, newAccountURL string) (*storage.Account, bool, error)
	UpdateAccount(ctx context.Context, acct *storage.Account, req acme.UpdateAccountRequest) (*storage.Account, error)

	LegacyAuthorize(ctx context.Context, acct *storage.Account, ident acme.Identifier) (*storage.Authorization, error)
	LegacyAuthorization(ctx context.Context, id string) (*storage.Authorization, error)
	LegacyChallenge(ctx context.Context, id string) (*storage.Challenge, *storage.Authorization, error)
	Challenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error)
	RespondChallenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error)

	LegacyIssue(ctx context.Context, acct *storage.Account, accountKey *jose.JSONWebKey, csrDER []byte, authzIDs []string) (*storage.Order, error)
	Certificate(ctx context.Context, serial string) ([]byte, [][][]byte, error)
	Revoke(ctx context.Context, req acme.RevokeRequest) error
}

var _ Core = (*acme.Core)(nil)
