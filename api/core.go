package api

import (
	"context"
	"encoding/json"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
)

// Core is what this front end needs of the protocol core, *acme.Core in
// production. It is declared here, where it is used, so that the JWS checks
// and handlers can be tested with a fake core, and so that what the HTTP layer
// may ask of the core is written down in one place.
type Core interface {
	AccountLookup

	TermsOfService() string
	Profiles() []acme.ProfileInfo

	NewAccount(ctx context.Context, key *jose.JSONWebKey, req acme.NewAccountRequest, remoteIP, newAccountURL string) (*storage.Account, bool, error)
	UpdateAccount(ctx context.Context, acct *storage.Account, req acme.UpdateAccountRequest) (*storage.Account, error)
	KeyChange(ctx context.Context, acct *storage.Account, currentKey, newKey *jose.JSONWebKey, payloadAccount string, payloadOldKey json.RawMessage) (*storage.Account, error)
	ListOrders(ctx context.Context, acct *storage.Account, cursor string) ([]string, string, error)

	NewOrder(ctx context.Context, acct *storage.Account, req acme.NewOrderRequest) (*storage.Order, error)
	Order(ctx context.Context, acct *storage.Account, id string) (*storage.Order, error)
	Finalize(ctx context.Context, acct *storage.Account, accountKey *jose.JSONWebKey, orderID string, csrDER []byte) (*storage.Order, error)

	PreAuthorize(ctx context.Context, acct *storage.Account, ident acme.Identifier) (*storage.Authorization, error)
	Authorization(ctx context.Context, acct *storage.Account, id string) (*storage.Authorization, error)
	DeactivateAuthorization(ctx context.Context, acct *storage.Account, id string) (*storage.Authorization, error)
	Challenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error)
	RespondChallenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error)

	Certificate(ctx context.Context, serial string) ([]byte, [][][]byte, error)
	Revoke(ctx context.Context, req acme.RevokeRequest) error
	RenewalInfo(ctx context.Context, certID string) (*acme.RenewalInfo, error)
}

// AccountLookup is all the JWS checks need of the core: the account a kid
// names, and its current key.
type AccountLookup interface {
	Account(ctx context.Context, id string) (*storage.Account, *jose.JSONWebKey, error)
}

var _ Core = (*acme.Core)(nil)
