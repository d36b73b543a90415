package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// DeleteExpired removes expired nonces, orders and authorizations with their
// challenges, in transactions of at most s.deleteBatch rows each so that no
// transaction holds many locks for long, and returns how many rows of those
// four kinds went. A valid order stays while its certificate is unexpired,
// and an authorization stays while a remaining order refers to it. The
// ledger and accounts are never deleted. Rows another transaction has locked
// are skipped, to be removed by a later run.
func (s *Store) DeleteExpired(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for _, step := range []func(context.Context, time.Time) (int64, error){
		s.deleteNonces, s.deleteOrders, s.deleteAuthorizations, s.deleteLeases,
	} {
		n, err := step(ctx, ts(cutoff))
		total += n
		if err != nil {
			return total, fmt.Errorf("delete expired: %w", err)
		}
	}
	return total, nil
}

// deleteNonces removes used nonces that expired before the cutoff.
func (s *Store) deleteNonces(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.deleteBefore(ctx, "nonces", "nonce", "expires", cutoff)
}

// deleteLeases removes leases that ended before the cutoff: a lease taken
// again later is simply written anew.
func (s *Store) deleteLeases(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.deleteBefore(ctx, "leases", "name", "held_until", cutoff)
}

// deleteBefore deletes the rows of table whose column at is before cutoff, in
// batches, skipping rows another transaction has locked; key is the table's
// primary key. The names are this package's own constants, never input.
func (s *Store) deleteBefore(ctx context.Context, table, key, at string, cutoff time.Time) (int64, error) {
	q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[2]s IN
		(SELECT %[2]s FROM %[1]s WHERE %[3]s < $1 ORDER BY %[3]s LIMIT $2 FOR UPDATE SKIP LOCKED)`, table, key, at)
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, q, cutoff, s.deleteBatch)
		if err != nil {
			return total, fmt.Errorf("%s: %w", table, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.deleteBatch) {
			return total, nil
		}
	}
}

// keyset is a position in (expires, id) order. Each batch resumes after the
// last row the previous one took, so rows that are kept are passed over once
// per run rather than once per batch.
type keyset struct {
	expires pgtype.Timestamptz
	id      string
}

func start() keyset {
	return keyset{expires: pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}}
}

func (k *keyset) advance(expires time.Time, id string) {
	if k.expires.InfinityModifier != pgtype.Finite || expires.After(k.expires.Time) ||
		(expires.Equal(k.expires.Time) && id > k.id) {
		k.expires, k.id = pgtype.Timestamptz{Time: expires, Valid: true}, id
	}
}

func (s *Store) deleteOrders(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	after := start()
	for {
		rows, err := s.pool.Query(ctx, `DELETE FROM orders WHERE id IN (
			SELECT o.id FROM orders o WHERE o.expires < $1 AND (o.expires, o.id) > ($2::timestamptz, $3::text)
			AND NOT (o.status = 'valid' AND EXISTS (
				SELECT 1 FROM certificates c WHERE c.serial = o.cert_serial AND c.expires >= $1))
			ORDER BY o.expires, o.id LIMIT $4 FOR UPDATE SKIP LOCKED)
			RETURNING expires, id`, cutoff, after.expires, after.id, s.deleteBatch)
		if err != nil {
			return total, fmt.Errorf("orders: %w", err)
		}
		var n int64
		var expires time.Time
		var id string
		_, err = pgx.ForEachRow(rows, []any{&expires, &id}, func() error {
			n++
			after.advance(expires, id)
			return nil
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
// any more, with their challenges. Locking the authorizations first makes a
// concurrent order that would reuse one wait, then fail its foreign key.
func (s *Store) deleteAuthorizations(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	after := start()
	for {
		var ids []string
		var n int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT a.id, a.expires FROM authorizations a
				WHERE a.expires < $1 AND (a.expires, a.id) > ($2::timestamptz, $3::text)
				AND NOT EXISTS (SELECT 1 FROM order_authzs oa WHERE oa.authz_id = a.id)
				ORDER BY a.expires, a.id LIMIT $4 FOR UPDATE SKIP LOCKED`, cutoff, after.expires, after.id, s.deleteBatch)
			if err != nil {
				return err
			}
			var id string
			var expires time.Time
			if _, err := pgx.ForEachRow(rows, []any{&id, &expires}, func() error {
				ids = append(ids, id)
				after.advance(expires, id)
				return nil
			}); err != nil || len(ids) == 0 {
				return err
			}
			tag, err := tx.Exec(ctx, `DELETE FROM challenges WHERE authz_id = ANY($1)`, ids)
			if err != nil {
				return err
			}
			n = tag.RowsAffected()
			tag, err = tx.Exec(ctx, `DELETE FROM authorizations WHERE id = ANY($1)`, ids)
			n += tag.RowsAffected()
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
