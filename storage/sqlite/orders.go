package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const orderCols = `id, account_id, status, identifiers, authz_ids, profile, not_before, not_after, expires,
	error, csr, cert_serial, replaces, lease_until, created_at, updated_at`

func scanOrder(row scanner) (*storage.Order, error) {
	var o storage.Order
	var idents, authzIDs sql.NullString
	var notBefore, notAfter sql.NullInt64
	var expires, lease, created, updated int64
	if err := row.Scan(&o.ID, &o.AccountID, &o.Status, &idents, &authzIDs, &o.Profile, &notBefore, &notAfter, &expires,
		&o.Error, &o.CSR, &o.CertSerial, &o.Replaces, &lease, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if o.Identifiers, err = fromJSONList[storage.Identifier](idents, "identifiers"); err != nil {
		return nil, err
	}
	if o.AuthzIDs, err = fromJSONList[string](authzIDs, "authorization IDs"); err != nil {
		return nil, err
	}
	o.NotBefore, o.NotAfter = fromOptMicros(notBefore), fromOptMicros(notAfter)
	o.Expires, o.LeaseUntil = fromMicros(expires), fromMicros(lease)
	o.CreatedAt, o.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &o, nil
}

// CreateOrder inserts o, its new authorizations and challenges, and its
// references to every authorization, in one transaction.
func (s *Store) CreateOrder(ctx context.Context, o *storage.Order, newAuthzs []*storage.Authorization) error {
	if err := records.PrepareOrder(o); err != nil {
		return fmt.Errorf("create order: %w", err)
	}
	for _, a := range newAuthzs {
		if err := records.PrepareAuthorization(a); err != nil {
			return fmt.Errorf("create order %q: %w", o.ID, err)
		}
	}
	idents, err := jsonList(o.Identifiers)
	if err != nil {
		return fmt.Errorf("create order %q: %w", o.ID, err)
	}
	authzIDs, err := jsonList(o.AuthzIDs)
	if err != nil {
		return fmt.Errorf("create order %q: %w", o.ID, err)
	}
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			o.ID, o.AccountID, o.Status, idents, authzIDs, o.Profile, optMicros(o.NotBefore), optMicros(o.NotAfter), micros(o.Expires),
			blob(o.Error), blob(o.CSR), o.CertSerial, o.Replaces, micros(o.LeaseUntil), micros(o.CreatedAt), micros(o.UpdatedAt))
		if err != nil {
			return mapErr(err, fmt.Sprintf("create order %q", o.ID))
		}
		// One statement per table, whatever the number of identifiers.
		if err := insertAuthorizations(ctx, tx, newAuthzs); err != nil {
			return fmt.Errorf("create order %q: %w", o.ID, err)
		}
		refs := make([][]any, len(o.AuthzIDs))
		for i, id := range o.AuthzIDs {
			refs[i] = []any{o.ID, id}
		}
		if err := insertRows(ctx, tx, `INSERT INTO order_authzs (order_id, authz_id) VALUES `, ` ON CONFLICT DO NOTHING`, refs); err != nil {
			return mapErr(err, fmt.Sprintf("create order %q: authorizations", o.ID))
		}
		return nil
	})
}

// GetOrder reads an order by ID.
func (s *Store) GetOrder(ctx context.Context, id string) (*storage.Order, error) {
	o, err := scanOrder(s.r.QueryRowContext(ctx, `SELECT `+orderCols+` FROM orders WHERE id = ?`, id))
	if err != nil {
		return nil, notFound(err, "order", id)
	}
	return o, nil
}

// UpdateOrder writes the mutable fields of o if its status is still fromStatus.
func (s *Store) UpdateOrder(ctx context.Context, o *storage.Order, fromStatus string) error {
	return s.conditional(ctx, "order", o.ID, `SELECT 1 FROM orders WHERE id = ?`,
		`UPDATE orders SET status = ?, error = ?, csr = ?, cert_serial = ?, lease_until = ?, lease_holder = ?, updated_at = ?
		WHERE id = ? AND status = ?`,
		o.Status, blob(o.Error), blob(o.CSR), o.CertSerial, micros(o.LeaseUntil), s.leaseHolder(), micros(records.Stamp(o.UpdatedAt)),
		o.ID, fromStatus)
}

// ListOrderIDs pages through an account's orders by (created_at, id),
// descending. It reads one row more than limit to know whether a next page
// exists, so the last page always ends with an empty cursor.
func (s *Store) ListOrderIDs(ctx context.Context, accountID, cursor string, limit int) ([]string, string, error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("list orders of %q: limit %d is not positive", accountID, limit)
	}
	var rows *sql.Rows
	var err error
	if cursor == "" {
		rows, err = s.r.QueryContext(ctx, `SELECT id, created_at FROM orders WHERE account_id = ?
			ORDER BY created_at DESC, id DESC LIMIT ?`, accountID, limit+1)
	} else {
		after, afterID, derr := records.DecodeCursor(cursor)
		if derr != nil {
			return nil, "", fmt.Errorf("list orders of %q: %w", accountID, derr)
		}
		rows, err = s.r.QueryContext(ctx, `SELECT id, created_at FROM orders WHERE account_id = ? AND (created_at, id) < (?, ?)
			ORDER BY created_at DESC, id DESC LIMIT ?`, accountID, micros(after), afterID, limit+1)
	}
	if err != nil {
		return nil, "", fmt.Errorf("list orders of %q: %w", accountID, err)
	}
	defer rows.Close()
	var ids []string
	var last int64
	for rows.Next() {
		var id string
		var created int64
		if err := rows.Scan(&id, &created); err != nil {
			return nil, "", fmt.Errorf("list orders of %q: %w", accountID, err)
		}
		if len(ids) == limit {
			return ids, records.EncodeCursor(fromMicros(last), ids[limit-1]), nil
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
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE account_id = ? AND created_at >= ?`,
		accountID, micros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count orders of %q: %w", accountID, err)
	}
	return n, nil
}

// ClaimOrders leases stuck finalizes in one statement: on the single writer
// connection no other claim can interleave.
func (s *Store) ClaimOrders(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Order, error) {
	if limit <= 0 {
		return nil, nil
	}
	orders, err := queryWrite(ctx, s, scanOrder, `UPDATE orders SET lease_until = ?, lease_holder = ?
		WHERE id IN (SELECT id FROM orders WHERE status = 'processing' AND lease_until < ? ORDER BY lease_until LIMIT ?)
		RETURNING `+orderCols,
		micros(now.Add(lease)), s.leaseHolder(), micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("claim orders: %w", err)
	}
	return orders, nil
}

// OrdersReplacing returns the orders that name certID in replaces.
func (s *Store) OrdersReplacing(ctx context.Context, certID string) ([]*storage.Order, error) {
	return queryAll(ctx, s.r, fmt.Sprintf("orders replacing %q", certID), scanOrder, `SELECT `+orderCols+` FROM orders WHERE replaces = ? AND replaces <> '' ORDER BY created_at, id`, certID)
}
