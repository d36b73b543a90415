package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const certCols = `serial, issuer, profile, order_id, lint_der, der, created_at, expires, revoked_at, reason, holder, outcome, outcome_reason, crl_shard`

func scanCertificate(row scanner) (*storage.Certificate, error) {
	var c storage.Certificate
	var revoked *time.Time
	var reason, shard int32
	if err := row.Scan(&c.Serial, &c.Issuer, &c.Profile, &c.OrderID, &c.LintDER, &c.DER, &c.CreatedAt, &c.Expires, &revoked, &reason, &c.Holder, &c.Outcome, &c.OutcomeReason, &shard); err != nil {
		return nil, err
	}
	c.Reason, c.CRLShard = int(reason), int(shard)
	c.LintDER, c.DER = records.NilIfEmpty(c.LintDER), records.NilIfEmpty(c.DER)
	c.CreatedAt, c.Expires, c.RevokedAt = fromTS(c.CreatedAt), fromTS(c.Expires), fromOptTS(revoked)
	return &c, nil
}

// ReserveSerial inserts a ledger entry; the primary key refuses a serial
// reserved before.
func (s *Store) ReserveSerial(ctx context.Context, c *storage.Certificate) error {
	if err := records.PrepareCertificate(c); err != nil {
		return fmt.Errorf("reserve serial: %w", err)
	}
	return s.insertOnce(ctx, fmt.Sprintf("reserve serial %s", c.Serial),
		`INSERT INTO certificates (serial, issuer, profile, order_id, lint_der, created_at, expires, holder, crl_shard)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		c.Serial, c.Issuer, c.Profile, c.OrderID, records.NilIfEmpty(c.LintDER), ts(c.CreatedAt), ts(c.Expires), c.Holder, c.CRLShard)
}

// RecordLintCertificate records the intent to sign a reserved serial.
func (s *Store) RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error {
	if len(lintDER) == 0 {
		return fmt.Errorf("record lint certificate of %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = $1`,
		`UPDATE certificates SET lint_der = $1 WHERE serial = $2 AND lint_der IS NULL AND outcome = ''`, lintDER, serial)
}

// RecordIssuedCertificate records the signed certificate of a serial whose
// intent was recorded.
func (s *Store) RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("record certificate %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = $1`,
		`UPDATE certificates SET der = $1, outcome = 'issued' WHERE serial = $2 AND lint_der IS NOT NULL AND der IS NULL AND outcome = ''`, der, serial)
}

// RecordNotSigned closes an open intent as not signed.
func (s *Store) RecordNotSigned(ctx context.Context, serial, reason string) error {
	if reason == "" {
		return fmt.Errorf("record %s as not signed: no reason", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = $1`,
		`UPDATE certificates SET outcome = 'not_signed', outcome_reason = $1 WHERE serial = $2 AND lint_der IS NOT NULL AND outcome = ''`, reason, serial)
}

// AbandonIntents closes holder's open rows ("" for all) in one transaction.
func (s *Store) AbandonIntents(ctx context.Context, holder string, at time.Time) (int64, error) {
	return s.abandon(ctx, `($1 = '' OR holder = $1)`, []any{holder}, at)
}

// AbandonIntent closes one open intent as abandoned and revokes it.
func (s *Store) AbandonIntent(ctx context.Context, serial string, at time.Time) error {
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = $1`,
		`UPDATE certificates SET outcome = 'abandoned', revoked_at = $1, reason = $2 WHERE serial = $3 AND lint_der IS NOT NULL AND outcome = ''`,
		ts(at), storage.ReasonCessationOfOperation, serial)
}

// AbandonOrphanedIntents closes the open rows whose holder's lease is not live.
func (s *Store) AbandonOrphanedIntents(ctx context.Context, leasePrefix string, at time.Time) (int64, error) {
	return s.abandon(ctx, `NOT EXISTS (SELECT 1 FROM leases WHERE name = $1 || certificates.holder AND held_until >= $2)`,
		[]any{leasePrefix, ts(at)}, at)
}

// abandon closes the open rows that match cond (placeholders $1.. for args):
// intents as abandoned and revoked, bare reservations as not signed.
func (s *Store) abandon(ctx context.Context, cond string, args []any, at time.Time) (int64, error) {
	var n int64
	k := len(args)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE certificates SET outcome = 'abandoned', revoked_at = $%d, reason = $%d
			WHERE outcome = '' AND lint_der IS NOT NULL AND `, k+1, k+2)+cond,
			append(append([]any{}, args...), ts(at), storage.ReasonCessationOfOperation)...)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `UPDATE certificates SET outcome = 'not_signed', outcome_reason = 'no_intent'
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
	return queryAll(ctx, s.pool, "ledger counts", func(r scanner) (storage.LedgerCount, error) {
		var c storage.LedgerCount
		err := r.Scan(&c.Issuer, &c.Outcome, &c.Reason, &c.Count)
		return c, err
	}, `SELECT issuer, outcome, outcome_reason, COUNT(*) FROM certificates GROUP BY issuer, outcome, outcome_reason ORDER BY issuer, outcome, outcome_reason`)
}

// OpenIntents lists the rows without an outcome, oldest first.
func (s *Store) OpenIntents(ctx context.Context, leasePrefix string, now time.Time) ([]storage.OpenIntent, error) {
	return queryAll(ctx, s.pool, "open intents", func(r scanner) (storage.OpenIntent, error) {
		var o storage.OpenIntent
		err := r.Scan(&o.Serial, &o.Issuer, &o.OrderID, &o.Holder, &o.CreatedAt, &o.HasIntent, &o.HolderLive)
		o.CreatedAt = fromTS(o.CreatedAt)
		return o, err
	}, `SELECT serial, issuer, order_id, holder, created_at, lint_der IS NOT NULL,
		EXISTS (SELECT 1 FROM leases WHERE name = $1 || certificates.holder AND held_until >= $2)
		FROM certificates WHERE outcome = '' ORDER BY created_at, serial`, leasePrefix, ts(now))
}

// GetCertificate reads a ledger entry.
func (s *Store) GetCertificate(ctx context.Context, serial string) (*storage.Certificate, error) {
	c, err := scanCertificate(s.pool.QueryRow(ctx, `SELECT `+certCols+` FROM certificates WHERE serial = $1`, serial))
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
	return queryAll(ctx, s.pool, fmt.Sprintf("certificates of order %q", orderID), scanCertificate, `SELECT `+certCols+` FROM certificates WHERE order_id = $1 ORDER BY created_at, serial`, orderID)
}

// RevokeCertificate marks an issued certificate revoked, once.
func (s *Store) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason int) error {
	if at.IsZero() {
		return fmt.Errorf("revoke %s: no revocation time", serial)
	}
	// A serial without a certificate was never issued: not found, as for an
	// unknown serial.
	err := s.conditional(ctx, "issued certificate", serial, `SELECT 1 FROM certificates WHERE serial = $1 AND der IS NOT NULL`,
		`UPDATE certificates SET revoked_at = $1, reason = $2 WHERE serial = $3 AND der IS NOT NULL AND revoked_at IS NULL`,
		ts(at), reason, serial)
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("certificate %s is revoked already: %w", serial, storage.ErrConflict)
	}
	return err
}

// ListRevokedShard lists the revoked certificates of one CRL shard: an
// index-only scan of certificates_revoked_shard, which INCLUDEs every other
// column it reads.
func (s *Store) ListRevokedShard(ctx context.Context, issuer string, shard int, expiresAfter time.Time) ([]storage.Revoked, error) {
	return s.listRevoked(ctx, fmt.Sprintf("revoked certificates of %q shard %d", issuer, shard), listRevokedShardSQL, issuer, shard, ts(expiresAfter))
}

// listRevokedShardSQL is exported to the tests, which check its query plan.
const listRevokedShardSQL = `SELECT serial, revoked_at, reason, expires FROM certificates
		WHERE issuer = $1 AND crl_shard = $2 AND revoked_at IS NOT NULL AND expires > $3 ORDER BY serial`

func (s *Store) listRevoked(ctx context.Context, what, query string, args ...any) ([]storage.Revoked, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var list []storage.Revoked
	for rows.Next() {
		var r storage.Revoked
		var reason int32
		if err := rows.Scan(&r.Serial, &r.RevokedAt, &reason, &r.Expires); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		r.Reason = int(reason)
		r.RevokedAt, r.Expires = fromTS(r.RevokedAt), fromTS(r.Expires)
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return list, nil
}
