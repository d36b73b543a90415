package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// DeleteExpired removes expired nonces, orders and authorizations with their
// challenges, in transactions of at most s.deleteBatch rows each so that the
// writer is never held for long, and returns how many rows of those four
// kinds went. A valid order stays while its certificate is unexpired, and an
// authorization stays while a remaining order refers to it. The ledger and
// accounts are never deleted.
func (s *Store) DeleteExpired(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for _, step := range []func(context.Context, int64) (int64, error){
		s.deleteNonces, s.deleteOrders, s.deleteAuthorizations, s.deleteLeases,
	} {
		n, err := step(ctx, micros(cutoff))
		total += n
		if err != nil {
			return total, fmt.Errorf("delete expired: %w", err)
		}
	}
	return total, nil
}

// deleteNonces removes used nonces that expired before the cutoff.
func (s *Store) deleteNonces(ctx context.Context, cutoff int64) (int64, error) {
	return s.deleteBefore(ctx, "nonces", "nonce", "expires", cutoff)
}

// deleteLeases removes leases that ended before the cutoff: a lease taken
// again later is simply written anew.
func (s *Store) deleteLeases(ctx context.Context, cutoff int64) (int64, error) {
	return s.deleteBefore(ctx, "leases", "name", "held_until", cutoff)
}

// deleteBefore deletes the rows of table whose column at is before cutoff, in
// batches; key is the table's primary key. The names are this package's own
// constants, never input.
func (s *Store) deleteBefore(ctx context.Context, table, key, at string, cutoff int64) (int64, error) {
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[2]s IN (SELECT %[2]s FROM %[1]s WHERE %[3]s < ? ORDER BY %[3]s LIMIT ?)`, table, key, at)
	var total int64
	for {
		res, err := s.exec(ctx, q, cutoff, s.deleteBatch)
		if err != nil {
			return total, fmt.Errorf("%s: %w", table, err)
		}
		n, err := res.RowsAffected()
		total += n
		if err != nil || n < int64(s.deleteBatch) {
			return total, err
		}
	}
}

// deleteOrders walks expired orders in (expires, id) order, resuming each
// batch after the last row the previous one deleted, so the valid orders it
// keeps are passed over once rather than once per batch.
func (s *Store) deleteOrders(ctx context.Context, cutoff int64) (int64, error) {
	var total int64
	afterExp, afterID := int64(-1<<63), ""
	for {
		var n int64
		err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `DELETE FROM orders WHERE id IN (
				SELECT o.id FROM orders o WHERE o.expires < ? AND (o.expires, o.id) > (?, ?)
				AND NOT (o.status = 'valid' AND EXISTS (
					SELECT 1 FROM certificates c WHERE c.serial = o.cert_serial AND c.expires >= ?))
				ORDER BY o.expires, o.id LIMIT ?)
				RETURNING expires, id`, cutoff, afterExp, afterID, cutoff, s.deleteBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var exp int64
				var id string
				if err := rows.Scan(&exp, &id); err != nil {
					return err
				}
				n++
				if exp > afterExp || (exp == afterExp && id > afterID) {
					afterExp, afterID = exp, id
				}
			}
			return rows.Err()
		})
		if err != nil {
			return total, fmt.Errorf("orders: %w", err)
		}
		total += n
		if n < int64(s.deleteBatch) {
			return total, nil
		}
	}
}

// deleteAuthorizations removes expired authorizations that no order refers to
// any more, with their challenges, walking them like deleteOrders.
func (s *Store) deleteAuthorizations(ctx context.Context, cutoff int64) (int64, error) {
	var total int64
	afterExp, afterID := int64(-1<<63), ""
	for {
		var ids []string
		var n int64
		err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT a.id, a.expires FROM authorizations a
				WHERE a.expires < ? AND (a.expires, a.id) > (?, ?)
				AND NOT EXISTS (SELECT 1 FROM order_authzs oa WHERE oa.authz_id = a.id)
				ORDER BY a.expires, a.id LIMIT ?`, cutoff, afterExp, afterID, s.deleteBatch)
			if err != nil {
				return err
			}
			ids = ids[:0]
			for rows.Next() {
				var id string
				if err := rows.Scan(&id, &afterExp); err != nil {
					rows.Close()
					return err
				}
				ids, afterID = append(ids, id), id
			}
			rows.Close()
			if err := rows.Err(); err != nil || len(ids) == 0 {
				return err
			}
			list, err := json.Marshal(ids)
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM challenges WHERE authz_id IN (SELECT value FROM json_each(?))`, string(list))
			if err != nil {
				return err
			}
			challenges, err := res.RowsAffected()
			if err != nil {
				return err
			}
			res, err = tx.ExecContext(ctx, `DELETE FROM authorizations WHERE id IN (SELECT value FROM json_each(?))`, string(list))
			if err != nil {
				return err
			}
			authzs, err := res.RowsAffected()
			n = challenges + authzs
			return err
		})
		if err != nil {
			return total, fmt.Errorf("authorizations: %w", err)
		}
		total += n
		if len(ids) < s.deleteBatch {
			return total, nil
		}
	}
}
