package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const certCols = `serial, issuer, profile, order_id, lint_der, der, created_at, expires, revoked_at, reason, holder, outcome, outcome_reason, crl_shard`

func scanCertificate(row scanner) (*storage.Certificate, error) {
	var c storage.Certificate
	var created, expires int64
	var revoked sql.NullInt64
	if err := row.Scan(&c.Serial, &c.Issuer, &c.Profile, &c.OrderID, &c.LintDER, &c.DER, &created, &expires, &revoked, &c.Reason, &c.Holder, &c.Outcome, &c.OutcomeReason, &c.CRLShard); err != nil {
		return nil, err
	}
	c.CreatedAt, c.Expires, c.RevokedAt = fromMicros(created), fromMicros(expires), fromOptMicros(revoked)
	return &c, nil
}

// ReserveSerial inserts a ledger entry, with its intent if given; the primary
// key refuses a serial reserved before.
func (s *Store) ReserveSerial(ctx context.Context, c *storage.Certificate) error {
	if err := records.PrepareCertificate(c); err != nil {
		return fmt.Errorf("reserve serial: %w", err)
	}
	// No lint certificate is NULL, a bare reservation, as on PostgreSQL: an
	// empty one must not count as an intent.
	var lint []byte
	if len(c.LintDER) > 0 {
		lint = c.LintDER
	}
	_, err := s.exec(ctx, `INSERT INTO certificates (serial, issuer, profile, order_id, lint_der, created_at, expires, holder, crl_shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Serial, c.Issuer, c.Profile, c.OrderID, lint, micros(c.CreatedAt), micros(c.Expires), c.Holder, c.CRLShard)
	return mapErr(err, fmt.Sprintf("reserve serial %s", c.Serial))
}

// RecordLintCertificate records the intent to sign a reserved serial.
func (s *Store) RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error {
	if len(lintDER) == 0 {
		return fmt.Errorf("record lint certificate of %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET lint_der = ? WHERE serial = ? AND lint_der IS NULL AND outcome = ''`, lintDER, serial)
}

// RecordIssuedCertificate records the signed certificate of a serial whose
// intent was recorded.
func (s *Store) RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("record certificate %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET der = ?, outcome = 'issued' WHERE serial = ? AND lint_der IS NOT NULL AND der IS NULL AND outcome = ''`, der, serial)
}

// RecordNotSigned closes an open intent as not signed.
func (s *Store) RecordNotSigned(ctx context.Context, serial, reason string) error {
	if reason == "" {
		return fmt.Errorf("record %s as not signed: no reason", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET outcome = 'not_signed', outcome_reason = ? WHERE serial = ? AND lint_der IS NOT NULL AND outcome = ''`, reason, serial)
}

// AbandonIntents closes holder's open rows ("" for all) in one transaction.
func (s *Store) AbandonIntents(ctx context.Context, holder string, at time.Time) (int64, error) {
	return s.abandon(ctx, `(? = '' OR holder = ?)`, at, holder, holder)
}

// AbandonIntent closes one open intent as abandoned and revokes it.
func (s *Store) AbandonIntent(ctx context.Context, serial string, at time.Time) error {
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET outcome = 'abandoned', revoked_at = ?, reason = ? WHERE serial = ? AND lint_der IS NOT NULL AND outcome = ''`,
		micros(at), storage.ReasonCessationOfOperation, serial)
}

// AbandonOrphanedIntents closes the open rows whose holder's lease is not live.
func (s *Store) AbandonOrphanedIntents(ctx context.Context, leasePrefix string, at time.Time) (int64, error) {
	return s.abandon(ctx, `NOT EXISTS (SELECT 1 FROM leases WHERE name = ? || certificates.holder AND held_until >= ?)`, at, leasePrefix, micros(at))
}

// abandon closes the open rows that match cond (with its args): intents as
// abandoned and revoked, bare reservations as not signed.
func (s *Store) abandon(ctx context.Context, cond string, at time.Time, args ...any) (int64, error) {
	var n int64
	err := s.c.do(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE certificates SET outcome = 'abandoned', revoked_at = ?, reason = ?
			WHERE outcome = '' AND lint_der IS NOT NULL AND `+cond,
			append([]any{micros(at), storage.ReasonCessationOfOperation}, args...)...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE certificates SET outcome = 'not_signed', outcome_reason = 'no_intent'
			WHERE outcome = '' AND lint_der IS NULL AND `+cond, args...)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("abandon open intents: %w", err)
	}
	return n, nil
}

// LedgerCounts counts rows per issuer, outcome and reason.
func (s *Store) LedgerCounts(ctx context.Context) ([]storage.LedgerCount, error) {
	return queryAll(ctx, s.r, "ledger counts", func(r scanner) (storage.LedgerCount, error) {
		var c storage.LedgerCount
		err := r.Scan(&c.Issuer, &c.Outcome, &c.Reason, &c.Count)
		return c, err
	}, `SELECT issuer, outcome, outcome_reason, COUNT(*) FROM certificates GROUP BY issuer, outcome, outcome_reason ORDER BY issuer, outcome, outcome_reason`)
}

// OpenIntents lists the rows without an outcome, oldest first.
func (s *Store) OpenIntents(ctx context.Context, leasePrefix string, now time.Time) ([]storage.OpenIntent, error) {
	return queryAll(ctx, s.r, "open intents", func(r scanner) (storage.OpenIntent, error) {
		var o storage.OpenIntent
		var created int64
		err := r.Scan(&o.Serial, &o.Issuer, &o.OrderID, &o.Holder, &created, &o.HasIntent, &o.HolderLive)
		o.CreatedAt = fromMicros(created)
		return o, err
	}, `SELECT serial, issuer, order_id, holder, created_at, lint_der IS NOT NULL,
		EXISTS (SELECT 1 FROM leases WHERE name = ? || certificates.holder AND held_until >= ?)
		FROM certificates WHERE outcome = '' ORDER BY created_at, serial`, leasePrefix, micros(now))
}

// GetCertificate reads a ledger entry.
func (s *Store) GetCertificate(ctx context.Context, serial string) (*storage.Certificate, error) {
	c, err := scanCertificate(s.r.QueryRowContext(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = ?`, serial))
	if err != nil {
		return nil, notFound(err, "certificate", serial)
	}
	return c, nil
}

// CertificatesForOrder returns an order's ledger entries, oldest first. ""
// names no order.
func (s *Store) CertificatesForOrder(ctx context.Context, orderID string) ([]*storage.Certificate, error) {
	if orderID == "" {
		return nil, nil
	}
	return queryAll(ctx, s.r, fmt.Sprintf("certificates of order %q", orderID), scanCertificate, `SELECT `+certCols+` FROM certificates WHERE order_id = ? ORDER BY created_at, serial`, orderID)
}

// RevokeCertificate marks an issued certificate revoked, once.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason int) error {
	if at.IsZero() {
		return fmt.Errorf("revoke %s: no revocation time", serial)
	}
	// A serial without a certificate was never issued: not found, as for an
	// unknown serial.
	err := s.conditional(ctx, "issued certificate", serial, `SELECT 1 FROM certificates WHERE serial = ? AND der IS NOT NULL`,
		`UPDATE certificates SET revoked_at = ?, reason = ? WHERE serial = ? AND der IS NOT NULL AND revoked_at IS NULL`,
		micros(at), reason, serial)
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("certificate %s is revoked already: %w", serial, storage.ErrConflict)
	}
	return err
}

// ListRevokedShard lists the revoked certificates of one CRL shard. The
// partial index certificates_revoked_shard holds every column it reads, in
// its order: a covering index scan, no table row read.
func (s *Store) ListRevokedShard(ctx context.Context, issuer string, shard int, expiresAfter time.Time) ([]storage.Revoked, error) {
	return s.listRevoked(ctx, fmt.Sprintf("revoked certificates of %q shard %d", issuer, shard), listRevokedShardSQL, issuer, shard, micros(expiresAfter))
}

// listRevokedShardSQL is exported to the tests, which check its query plan.
const listRevokedShardSQL = `SELECT serial, revoked_at, reason, expires FROM certificates
		WHERE issuer = ? AND crl_shard = ? AND revoked_at IS NOT NULL AND expires > ? ORDER BY serial`

func (s *Store) listRevoked(ctx context.Context, what, query string, args ...any) ([]storage.Revoked, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var list []storage.Revoked
	for rows.Next() {
		var r storage.Revoked
		var revoked, expires int64
		if err := rows.Scan(&r.Serial, &revoked, &r.Reason, &expires); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		r.RevokedAt, r.Expires = fromMicros(revoked), fromMicros(expires)
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return list, nil
}
