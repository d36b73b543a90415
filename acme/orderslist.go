package acme

import (
	"context"
	"errors"

	"github.com/anvil-pki/anvil/storage"
)

// ListOrders pages through an account's orders, newest first (RFC 8555
// 7.1.2.1).
func (ca *Core) ListOrders(ctx context.Context, acct *storage.Account, cursor string) ([]string, string, error) {
	ids, next, err := ca.store.ListOrderIDs(ctx, acct.ID, cursor, ca.cfg.OrdersPerPage)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, "", Malformed("bad cursor")
		}
		return nil, "", ServerInternal(err, "storage error listing orders")
	}
	return ids, next, nil
}
