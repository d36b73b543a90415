package postgres

import (
	"context"
	"fmt"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const eabCols = `id, key, algorithm, comment, allowed_suffixes, account_id, revoked, created_at`

func scanEABKey(row scanner) (*storage.EABKey, error) {
	var k storage.EABKey
	if err := row.Scan(&k.ID, &k.Key, &k.Algorithm, &k.Comment, &k.AllowedSuffixes, &k.AccountID, &k.Revoked, &k.CreatedAt); err != nil {
		return nil, err
	}
	k.AllowedSuffixes = records.NilIfEmpty(k.AllowedSuffixes)
	k.CreatedAt = fromTS(k.CreatedAt)
	return &k, nil
}

// CreateEABKey inserts k, unbound; the primary key refuses an ID in use.
func (s *Store) CreateEABKey(ctx context.Context, k *storage.EABKey) error {
	if err := records.PrepareEABKey(k); err != nil {
		return fmt.Errorf("create EAB key: %w", err)
	}
	return s.insertOnce(ctx, fmt.Sprintf("create EAB key %q", k.ID),
		`INSERT INTO eab_keys (`+eabCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		k.ID, k.Key, k.Algorithm, k.Comment, textArray(k.AllowedSuffixes), k.AccountID, k.Revoked, ts(k.CreatedAt))
}

// GetEABKey reads an EAB key by ID.
func (s *Store) GetEABKey(ctx context.Context, id string) (*storage.EABKey, error) {
	k, err := scanEABKey(s.pool.QueryRow(ctx, `SELECT `+eabCols+` FROM eab_keys WHERE id = $1`, id))
	if err != nil {
		return nil, notFound(err, "EAB key", id)
	}
	return k, nil
}

// ListEABKeys lists every EAB key, oldest first.
func (s *Store) ListEABKeys(ctx context.Context) ([]*storage.EABKey, error) {
	return queryAll(ctx, s.pool, "list EAB keys", scanEABKey, `SELECT `+eabCols+` FROM eab_keys ORDER BY created_at, id`)
}

// RevokeEABKey marks a key revoked. Revoking a revoked key changes nothing and
// is not an error.
func (s *Store) RevokeEABKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE eab_keys SET revoked = true WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("revoke EAB key %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return records.NotFound("EAB key", id)
	}
	return nil
}

// BindEABKey binds an unbound, unrevoked key to accountID in one conditional
// update.
func (s *Store) BindEABKey(ctx context.Context, id, accountID string) error {
	if accountID == "" {
		return fmt.Errorf("bind EAB key %q: no account", id)
	}
	return s.conditional(ctx, "EAB key", id, `SELECT 1 FROM eab_keys WHERE id = $1`,
		`UPDATE eab_keys SET account_id = $1 WHERE id = $2 AND account_id = '' AND NOT revoked`, accountID, id)
}
