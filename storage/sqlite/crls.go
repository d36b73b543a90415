package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// LatestRevocation counts the issuer's revoked certificates and finds the
// latest revocation time, through the partial index of revoked certificates.
func (s *Store) LatestRevocation(ctx context.Context, issuer string) (int, time.Time, error) {
	var n int
	var latest sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*), MAX(revoked_at) FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL`, issuer).Scan(&n, &latest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("latest revocation of %q: %w", issuer, err)
	}
	return n, fromOptMicros(latest), nil
}

// PutCRL replaces the issuer's CRL in one statement if the new number is
// greater: the upsert's WHERE leaves a newer stored CRL alone.
func (s *Store) PutCRL(ctx context.Context, c *storage.CRL) error {
	res, err := s.exec(ctx, `INSERT INTO crls (issuer, number, this_update, next_update, der) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, der = excluded.der
		WHERE excluded.number > crls.number`,
		c.Issuer, c.Number, micros(c.ThisUpdate), micros(c.NextUpdate), c.DER)
	if err != nil {
		return fmt.Errorf("put CRL of %q: %w", c.Issuer, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("CRL %d of %q is not newer than the stored one: %w", c.Number, c.Issuer, storage.ErrConflict)
	}
	return nil
}

// GetCRL returns the issuer's current CRL.
func (s *Store) GetCRL(ctx context.Context, issuer string) (*storage.CRL, error) {
	c := &storage.CRL{Issuer: issuer}
	var this, next int64
	err := s.r.QueryRowContext(ctx, `SELECT number, this_update, next_update, der FROM crls WHERE issuer = ?`, issuer).
		Scan(&c.Number, &this, &next, &c.DER)
	if err != nil {
		return nil, notFound(err, "CRL", issuer)
	}
	c.ThisUpdate, c.NextUpdate = fromMicros(this), fromMicros(next)
	return c, nil
}
