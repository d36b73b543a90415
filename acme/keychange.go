package acme

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/storage"
)

// KeyChange replaces an account's key (RFC 8555 7.3.5). The api has checked the
// outer JWS (signed by the current key, with kid) and the inner one (signed by
// newKey, carried in its jwk, with the same url and no nonce); this checks what
// the inner payload says: that it names this account and its current key.
func (ca *Core) KeyChange(ctx context.Context, acct *storage.Account, currentKey, newKey *jose.JSONWebKey, payloadAccount string, payloadOldKey json.RawMessage) (*storage.Account, error) {
	if payloadAccount != ca.cfg.AccountURL(acct.ID) {
		return nil, Malformed("the inner payload's account %q is not the account signing the request", payloadAccount)
	}
	var oldKey jose.JSONWebKey
	if err := oldKey.UnmarshalJSON(payloadOldKey); err != nil {
		return nil, Malformed("oldKey: %v", err)
	}
	oldID, err := KeyID(&oldKey)
	if err != nil || oldID != acct.KeyID {
		return nil, Malformed("oldKey is not the account's current key")
	}
	if err := checkAccountKey(newKey); err != nil {
		return nil, err
	}
	newID, err := KeyID(newKey)
	if err != nil {
		return nil, BadPublicKey("cannot compute the new key's thumbprint: %v", err)
	}
	if newID == acct.KeyID {
		return nil, Malformed("the new key is the current key")
	}
	if other, err := ca.store.GetAccountByKeyID(ctx, newID); err == nil {
		return nil, Conflict(ca.cfg.AccountURL(other.ID), "the new key is already the key of an account")
	}
	newJSON, err := newKey.MarshalJSON()
	if err != nil {
		return nil, BadPublicKey("cannot encode the new key: %v", err)
	}
	if err := ca.store.RolloverAccountKey(ctx, acct.ID, acct.KeyID, newID, newJSON); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			if other, gerr := ca.store.GetAccountByKeyID(ctx, newID); gerr == nil {
				return nil, Conflict(ca.cfg.AccountURL(other.ID), "the new key is already the key of an account")
			}
			return nil, Malformed("the account's key changed meanwhile")
		}
		return nil, ServerInternal(err, "storage error rolling over the key")
	}
	updated := *acct
	updated.KeyID, updated.Key = newID, newJSON
	ca.log.Info("account key rolled over", "audit", "account", "account", acct.ID, "old_key", acct.KeyID, "new_key", newID)
	if err := ca.record(ctx, audit.AccountKeyChanged, map[string]any{"account": acct.ID, "old_key": acct.KeyID, "new_key": newID}); err != nil {
		return nil, err
	}
	return &updated, nil
}
