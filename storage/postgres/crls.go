package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// RevocationsByShard counts the issuer's revoked certificates per CRL shard,
// from the covering index of revoked certificates.
func (s *Store) RevocationsByShard(ctx context.Context, issuer string) ([]storage.ShardRevocations, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("revocations of %q by shard", issuer), func(r scanner) (storage.ShardRevocations, error) {
		var v storage.ShardRevocations
		var shard int32
		var n int64
		err := r.Scan(&shard, &n, &v.Latest)
		v.Shard, v.Count, v.Latest = int(shard), int(n), v.Latest.UTC()
		return v, err
	}, `SELECT crl_shard, COUNT(*), MAX(revoked_at) FROM certificates WHERE issuer = $1 AND revoked_at IS NOT NULL
		GROUP BY crl_shard ORDER BY crl_shard`, issuer)
}

// PutCRL replaces the CRL of the issuer's shard in one statement if the new
// number is greater: the upsert's WHERE leaves a newer stored CRL alone.
func (s *Store) PutCRL(ctx context.Context, c *storage.CRL) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO crls (issuer, shard, number, this_update, next_update, der) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (issuer, shard) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, der = excluded.der
		WHERE excluded.number > crls.number`,
		c.Issuer, c.Shard, c.Number, ts(c.ThisUpdate), ts(c.NextUpdate), c.DER)
	if err != nil {
		return fmt.Errorf("put CRL of %q shard %d: %w", c.Issuer, c.Shard, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("CRL %d of %q shard %d is not newer than the stored one: %w", c.Number, c.Issuer, c.Shard, storage.ErrConflict)
	}
	return nil
}

// GetCRLShard returns the issuer's current CRL of one shard.
func (s *Store) GetCRLShard(ctx context.Context, issuer string, shard int) (*storage.CRL, error) {
	c := &storage.CRL{Issuer: issuer, Shard: shard}
	var this, next time.Time
	err := s.pool.QueryRow(ctx, `SELECT number, this_update, next_update, der FROM crls WHERE issuer = $1 AND shard = $2`, issuer, shard).
		Scan(&c.Number, &this, &next, &c.DER)
	if err != nil {
		return nil, notFound(err, "CRL", fmt.Sprintf("%s shard %d", issuer, shard))
	}
	c.ThisUpdate, c.NextUpdate = this.UTC(), next.UTC()
	return c, nil
}

// CRLHeads returns the issuer's stored CRLs without their DER, by shard.
func (s *Store) CRLHeads(ctx context.Context, issuer string) ([]storage.CRL, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("CRLs of %q", issuer), func(r scanner) (storage.CRL, error) {
		c := storage.CRL{Issuer: issuer}
		var shard int32
		var this, next time.Time
		err := r.Scan(&shard, &c.Number, &this, &next)
		c.Shard, c.ThisUpdate, c.NextUpdate = int(shard), this.UTC(), next.UTC()
		return c, err
	}, `SELECT shard, number, this_update, next_update FROM crls WHERE issuer = $1 ORDER BY shard`, issuer)
}
