package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

// TryLease takes or renews a lease in one upsert: the row is written only if
// it is new, held by holder, or expired, and the changed-row count says which.
// Nodes racing for a free lease queue on the primary key; the losers then
// evaluate the condition against the winner's row and change nothing.
func (s *Store) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, held_until = EXCLUDED.held_until
		WHERE leases.holder = EXCLUDED.holder OR leases.held_until < $4`,
		name, holder, ts(now.Add(ttl)), ts(now))
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ReleaseLease deletes the lease if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %q of %q: %w", name, holder, err)
	}
	return nil
}

// ReleaseLeasesOf frees holder's orders and challenges in processing.
func (s *Store) ReleaseLeasesOf(ctx context.Context, holder string) (int64, error) {
	var n int64
	zero := ts(time.Time{})
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n = 0
		for _, table := range []string{"orders", "challenges"} {
			tag, err := tx.Exec(ctx, `UPDATE `+table+` SET lease_until = $1 WHERE status = 'processing' AND lease_until > $1 AND lease_holder = $2`, zero, holder)
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release leases of %q: %w", holder, err)
	}
	return n, nil
}

// ReleaseAllLeases ends every lease in one transaction. On PostgreSQL other
// nodes may hold leases: only a tool that knows every node is stopped may
// call it.
func (s *Store) ReleaseAllLeases(ctx context.Context) (int64, error) {
	var n int64
	zero := ts(time.Time{})
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n = 0
		for _, q := range []string{
			`UPDATE orders SET lease_until = $1 WHERE status = 'processing' AND lease_until > $1`,
			`UPDATE challenges SET lease_until = $1 WHERE status = 'processing' AND lease_until > $1`,
		} {
			tag, err := tx.Exec(ctx, q, zero)
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		// An operator's CRL request (storage.CRLRequestLease) is no lease of
		// the dead process: it waits for the publisher.
		_, err := tx.Exec(ctx, `DELETE FROM leases WHERE name NOT LIKE 'crl-request/%'`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release all leases: %w", err)
	}
	return n, nil
}

// TryLeaseAndCertificates is TryLease and, in the same round trip,
// CertificatesForOrder(orderID): the signer's start of an issuance. The two
// statements go as one batch, which the server runs as one implicit
// transaction in order; under READ COMMITTED the read takes its snapshot
// after the lease write has its row, so it sees every certificate the
// lease's previous holder recorded before releasing it.
func (s *Store) TryLeaseAndCertificates(ctx context.Context, name, holder string, now time.Time, ttl time.Duration, orderID string) (bool, []*storage.Certificate, error) {
	if orderID == "" { // names no order
		got, err := s.TryLease(ctx, name, holder, now, ttl)
		return got, nil, err
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO leases (name, holder, held_until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, held_until = EXCLUDED.held_until
		WHERE leases.holder = EXCLUDED.holder OR leases.held_until < $4`,
		name, holder, ts(now.Add(ttl)), ts(now))
	b.Queue(`SELECT `+certCols+` FROM certificates WHERE order_id = $1 ORDER BY created_at, serial`, orderID)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	tag, err := br.Exec()
	if err != nil {
		return false, nil, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	rows, err := br.Query()
	if err != nil {
		return false, nil, fmt.Errorf("certificates of order %q: %w", orderID, err)
	}
	certs, err := records.Collect(rows, scanCertificate)
	if err != nil {
		return false, nil, fmt.Errorf("certificates of order %q: %w", orderID, err)
	}
	if err := br.Close(); err != nil {
		return false, nil, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	return tag.RowsAffected() > 0, certs, nil
}
