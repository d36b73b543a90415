package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// TryLease takes or renews a lease in one upsert: the row is written only if
// it is new, held by holder, or expired, and the changed-row count says which.
func (s *Store) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := s.exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, held_until = excluded.held_until
		WHERE leases.holder = excluded.holder OR leases.held_until < ?`,
		name, holder, micros(now.Add(ttl)), micros(now))
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	return n > 0, nil
}

// ReleaseLease deletes the lease if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %q of %q: %w", name, holder, err)
	}
	return nil
}

// ReleaseLeasesOf frees holder's orders and challenges in processing.
func (s *Store) ReleaseLeasesOf(ctx context.Context, holder string) (int64, error) {
	return s.releaseWork(ctx, `AND lease_holder = ?`, holder)
}

// releaseWork sets the lease of orders and challenges in processing that
// match cond to the zero time, in one transaction, and counts them.
func (s *Store) releaseWork(ctx context.Context, cond string, args ...any) (int64, error) {
	var n int64
	zero := micros(time.Time{})
	err := s.c.do(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		n = 0
		for _, table := range []string{"orders", "challenges"} {
			res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET lease_until = ? WHERE status = 'processing' AND lease_until > ? `+cond,
				append([]any{zero, zero}, args...)...)
			if err != nil {
				return err
			}
			m, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += m
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return n, nil
}

// ReleaseAllLeases ends every lease in one transaction: this process owns the
// database alone, and what its predecessor held is its own to resume.
func (s *Store) ReleaseAllLeases(ctx context.Context) (int64, error) {
	var n int64
	zero := micros(time.Time{})
	err := s.c.do(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		n = 0
		for _, q := range []string{
			`UPDATE orders SET lease_until = ? WHERE status = 'processing' AND lease_until > ?`,
			`UPDATE challenges SET lease_until = ? WHERE status = 'processing' AND lease_until > ?`,
		} {
			res, err := tx.ExecContext(ctx, q, zero, zero)
			if err != nil {
				return err
			}
			m, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += m
		}
		// An operator's CRL request (storage.CRLRequestLease) is no lease of
		// the dead process: it waits for the publisher.
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name NOT LIKE 'crl-request/%'`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release all leases: %w", err)
	}
	return n, nil
}

// TryLeaseAndCertificates is TryLease, then CertificatesForOrder(orderID):
// the signer's start of an issuance, one round trip on PostgreSQL. Here
// both are in-process calls; the read follows the lease write, so it sees
// every certificate the lease's previous holder recorded before releasing it.
func (s *Store) TryLeaseAndCertificates(ctx context.Context, name, holder string, now time.Time, ttl time.Duration, orderID string) (bool, []*storage.Certificate, error) {
	got, err := s.TryLease(ctx, name, holder, now, ttl)
	if err != nil {
		return false, nil, err
	}
	certs, err := s.CertificatesForOrder(ctx, orderID)
	if err != nil {
		if got {
			// Not taken, as on PostgreSQL, where the failed read undoes the write.
			err = errors.Join(err, s.ReleaseLease(ctx, name, holder))
		}
		return false, nil, err
	}
	return got, certs, nil
}
