package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const orderCols = `id, account_id, status, identifiers, authz_ids, profile, not_before, not_after, expires,
	error, csr, cert_serial, replaces, lease_until, created_at, updated_at`

func scanOrder(row scanner) (*storage.Order, error) {
	var o storage.Order
	var idents []byte
	var notBefore, notAfter *time.Time
	if err := row.Scan(&o.ID, &o.AccountID, &o.Status, &idents, &o.AuthzIDs, &o.Profile, &notBefore, &notAfter, &o.Expires,
		&o.Error, &o.CSR, &o.CertSerial, &o.Replaces, &o.LeaseUntil, &o.CreatedAt, &o.UpdatedAt); err != nil {
		return nil, err
	}
	var err error
	if o.Identifiers, err = fromJSONB[storage.Identifier](idents, "identifiers"); err != nil {
		return nil, err
	}
	o.AuthzIDs = records.NilIfEmpty(o.AuthzIDs)
	o.Error, o.CSR = records.NilIfEmpty(o.Error), records.NilIfEmpty(o.CSR)
	o.NotBefore, o.NotAfter = fromOptTS(notBefore), fromOptTS(notAfter)
	o.Expires, o.LeaseUntil = fromTS(o.Expires), fromTS(o.LeaseUntil)
	o.CreatedAt, o.UpdatedAt = fromTS(o.CreatedAt), fromTS(o.UpdatedAt)
	return &o, nil
}

// CreateOrder inserts o, its new authorizations and challenges, and its
// references to every authorization as one batch: one round trip, run by
// the server as one implicit transaction, so a failure leaves nothing. The
// batch holds one statement per table whatever the number of identifiers.
func (s *Store) CreateOrder(ctx context.Context, o *storage.Order, newAuthzs []*storage.Authorization) error {
	if err := records.PrepareOrder(o); err != nil {
		return fmt.Errorf("create order: %w", err)
	}
	for _, a := range newAuthzs {
		if err := records.PrepareAuthorization(a); err != nil {
			return fmt.Errorf("create order %q: %w", o.ID, err)
		}
	}
	idents, err := jsonb(o.Identifiers)
	if err != nil {
		return fmt.Errorf("create order %q: %w", o.ID, err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO orders (`+orderCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		o.ID, o.AccountID, o.Status, idents, textArray(o.AuthzIDs), o.Profile, optTS(o.NotBefore), optTS(o.NotAfter), ts(o.Expires),
		bytea(o.Error), bytea(o.CSR), o.CertSerial, o.Replaces, ts(o.LeaseUntil), ts(o.CreatedAt), ts(o.UpdatedAt))
	queueAuthorizations(b, newAuthzs)
	if len(o.AuthzIDs) > 0 {
		b.Queue(`INSERT INTO order_authzs (order_id, authz_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`,
			o.ID, o.AuthzIDs)
	}
	return mapErr(s.pool.SendBatch(ctx, b).Close(), fmt.Sprintf("create order %q", o.ID))
}

// GetOrder reads an order by ID.
func (s *Store) GetOrder(ctx context.Context, id string) (*storage.Order, error) {
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderCols+` FROM orders WHERE id = $1`, id))
	if err != nil {
		return nil, notFound(err, "order", id)
	}
	return o, nil
}

// UpdateOrder writes the mutable fields of o if its status is still fromStatus.
func (s *Store) UpdateOrder(ctx context.Context, o *storage.Order, fromStatus string) error {
	return s.conditional(ctx, "order", o.ID, `SELECT 1 FROM orders WHERE id = $1`,
		`UPDATE orders SET status = $1, error = $2, csr = $3, cert_serial = $4, lease_until = $5, updated_at = $6, lease_holder = $9
		WHERE id = $7 AND status = $8`,
		o.Status, bytea(o.Error), bytea(o.CSR), o.CertSerial, ts(o.LeaseUntil), records.Stamp(o.UpdatedAt),
		o.ID, fromStatus, s.leaseHolder())
}

// ListOrderIDs pages through an account's orders by (created_at, id),
// descending. It reads one row more than limit to know whether a next page
// exists, so the last page always ends with an empty cursor.
func (s *Store) ListOrderIDs(ctx context.Context, accountID, cursor string, limit int) ([]string, string, error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("list orders of %q: limit %d is not positive", accountID, limit)
	}
	var rows pgx.Rows
	var err error
	if cursor == "" {
		rows, err = s.pool.Query(ctx, `SELECT id, created_at FROM orders WHERE account_id = $1
			ORDER BY created_at DESC, id DESC LIMIT $2`, accountID, limit+1)
	} else {
		after, afterID, derr := records.DecodeCursor(cursor)
		if derr != nil {
			return nil, "", fmt.Errorf("list orders of %q: %w", accountID, derr)
		}
		rows, err = s.pool.Query(ctx, `SELECT id, created_at FROM orders
			WHERE account_id = $1 AND (created_at, id) < ($2::timestamptz, $3::text)
			ORDER BY created_at DESC, id DESC LIMIT $4`, accountID, after, afterID, limit+1)
	}
	if err != nil {
		return nil, "", fmt.Errorf("list orders of %q: %w", accountID, err)
	}
	defer rows.Close()
	var ids []string
	var last time.Time
	for rows.Next() {
		var id string
		var created time.Time
		if err := rows.Scan(&id, &created); err != nil {
			return nil, "", fmt.Errorf("list orders of %q: %w", accountID, err)
		}
		if len(ids) == limit {
			return ids, records.EncodeCursor(last, ids[limit-1]), nil
		}
		ids, last = append(ids, id), created
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list orders of %q: %w", accountID, err)
	}
	return ids, "", nil
}

// CountOrders counts orders the account created at or after since.
func (s *Store) CountOrders(ctx context.Context, accountID string, since time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM orders WHERE account_id = $1 AND created_at >= $2`,
		accountID, ts(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count orders of %q: %w", accountID, err)
	}
	return n, nil
}

// ClaimOrders leases stuck finalizes. SKIP LOCKED passes over rows another
// node is claiming; a row it claimed meanwhile fails the re-checked lease
// condition. Either way no row goes to two nodes within a lease.
func (s *Store) ClaimOrders(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryAll(ctx, s.pool, "claim orders", scanOrder, `UPDATE orders SET lease_until = $1, lease_holder = $4
		WHERE id IN (SELECT id FROM orders WHERE status = 'processing' AND lease_until < $2
			ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+orderCols,
		ts(now.Add(lease)), ts(now), limit, s.leaseHolder())
}

// OrdersReplacing returns the orders that name certID in replaces.
func (s *Store) OrdersReplacing(ctx context.Context, certID string) ([]*storage.Order, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("orders replacing %q", certID), scanOrder, `SELECT `+orderCols+` FROM orders WHERE replaces = $1 AND replaces <> '' ORDER BY created_at, id`, certID)
}
