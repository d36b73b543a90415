package sqlite

import (
	"context"
	"fmt"

	"github.com/anvil-pki/anvil/storage"
)

// RevocationsByShard counts the issuer's revoked certificates per CRL shard,
// from the covering index of revoked certificates.
func (s *Store) RevocationsByShard(ctx context.Context, issuer string) ([]storage.ShardRevocations, error) {
	return queryAll(ctx, s.r, fmt.Sprintf("revocations of %q by shard", issuer), func(r scanner) (storage.ShardRevocations, error) {
		var v storage.ShardRevocations
		var latest int64
		err := r.Scan(&v.Shard, &v.Count, &latest)
		v.Latest = fromMicros(latest)
		return v, err
	}, `SELECT crl_shard, COUNT(*), MAX(revoked_at) FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL
		GROUP BY crl_shard ORDER BY crl_shard`, issuer)
}

// PutCRL replaces the CRL of the issuer's shard in one statement if the new
// number is greater: the upsert's WHERE leaves a newer stored CRL alone.
func (s *Store) PutCRL(ctx context.Context, c *storage.CRL) error {
	res, err := s.exec(ctx, `INSERT INTO crls (issuer, shard, number, this_update, next_update, der) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer, shard) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, der = excluded.der
		WHERE excluded.number > crls.number`,
		c.Issuer, c.Shard, c.Number, micros(c.ThisUpdate), micros(c.NextUpdate), c.DER)
	if err != nil {
		return fmt.Errorf("put CRL of %q shard %d: %w", c.Issuer, c.Shard, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("CRL %d of %q shard %d is not newer than the stored one: %w", c.Number, c.Issuer, c.Shard, storage.ErrConflict)
	}
	return nil
}

// GetCRLShard returns the issuer's current CRL of one shard.
func (s *Store) GetCRLShard(ctx context.Context, issuer string, shard int) (*storage.CRL, error) {
	c := &storage.CRL{Issuer: issuer, Shard: shard}
	var this, next int64
	err := s.r.QueryRowContext(ctx, `SELECT number, this_update, next_update, der FROM crls WHERE issuer = ? AND shard = ?`, issuer, shard).
		Scan(&c.Number, &this, &next, &c.DER)
	if err != nil {
		return nil, notFound(err, "CRL", fmt.Sprintf("%s shard %d", issuer, shard))
	}
	c.ThisUpdate, c.NextUpdate = fromMicros(this), fromMicros(next)
	return c, nil
}

// CRLHeads returns the issuer's stored CRLs without their DER, by shard.
func (s *Store) CRLHeads(ctx context.Context, issuer string) ([]storage.CRL, error) {
	return queryAll(ctx, s.r, fmt.Sprintf("CRLs of %q", issuer), func(r scanner) (storage.CRL, error) {
		c := storage.CRL{Issuer: issuer}
		var this, next int64
		err := r.Scan(&c.Shard, &c.Number, &this, &next)
		c.ThisUpdate, c.NextUpdate = fromMicros(this), fromMicros(next)
		return c, err
	}, `SELECT shard, number, this_update, next_update FROM crls WHERE issuer = ? ORDER BY shard`, issuer)
}
