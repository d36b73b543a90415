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

const certCols = `serial, issuer, profile, order_id, lint_der, der, created_at, expires, revoked_at, reason`

func scanCertificate(row scanner) (*storage.Certificate, error) {
	var c storage.Certificate
	var created, expires int64
	var revoked sql.NullInt64
	if err := row.Scan(&c.Serial, &c.Issuer, &c.Profile, &c.OrderID, &c.LintDER, &c.DER, &created, &expires, &revoked, &c.Reason); err != nil {
		return nil, err
	}
	c.CreatedAt, c.Expires, c.RevokedAt = fromMicros(created), fromMicros(expires), fromOptMicros(revoked)
	return &c, nil
}

// ReserveSerial inserts a ledger entry; the primary key refuses a serial
// reserved before.
func (s *Store) ReserveSerial(ctx context.Context, c *storage.Certificate) error {
	if err := records.PrepareCertificate(c); err != nil {
		return fmt.Errorf("reserve serial: %w", err)
	}
	_, err := s.exec(ctx, `INSERT INTO certificates (serial, issuer, profile, order_id, created_at, expires)
		VALUES (?, ?, ?, ?, ?, ?)`,
		c.Serial, c.Issuer, c.Profile, c.OrderID, micros(c.CreatedAt), micros(c.Expires))
	return mapErr(err, fmt.Sprintf("reserve serial %s", c.Serial))
}

// RecordLintCertificate records the intent to sign a reserved serial.
func (s *Store) RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error {
	if len(lintDER) == 0 {
		return fmt.Errorf("record lint certificate of %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET lint_der = ? WHERE serial = ? AND lint_der IS NULL`, lintDER, serial)
}

// RecordIssuedCertificate records the signed certificate of a serial whose
// intent was recorded.
func (s *Store) RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("record certificate %s: it is empty", serial)
	}
	return s.conditional(ctx, "reserved serial", serial, `SELECT 1 FROM certificates WHERE serial = ?`,
		`UPDATE certificates SET der = ? WHERE serial = ? AND lint_der IS NOT NULL AND der IS NULL`, der, serial)
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

// ListRevoked lists an issuer's revoked certificates that expire after
// expiresAfter, by serial.
func (s *Store) ListRevoked(ctx context.Context, issuer string, expiresAfter time.Time) ([]storage.Revoked, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT serial, revoked_at, reason, expires FROM certificates
		WHERE issuer = ? AND revoked_at IS NOT NULL AND expires > ? ORDER BY serial`, issuer, micros(expiresAfter))
	if err != nil {
		return nil, fmt.Errorf("revoked certificates of %q: %w", issuer, err)
	}
	defer rows.Close()
	var list []storage.Revoked
	for rows.Next() {
		var r storage.Revoked
		var revoked, expires int64
		if err := rows.Scan(&r.Serial, &revoked, &r.Reason, &expires); err != nil {
			return nil, fmt.Errorf("revoked certificates of %q: %w", issuer, err)
		}
		r.RevokedAt, r.Expires = fromMicros(revoked), fromMicros(expires)
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoked certificates of %q: %w", issuer, err)
	}
	return list, nil
}
