package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const eabCols = `id, key, algorithm, comment, allowed_suffixes, account_id, revoked, created_at`

func scanEABKey(row scanner) (*storage.EABKey, error) {
	var k storage.EABKey
	var suffixes sql.NullString
	var created int64
	if err := row.Scan(&k.ID, &k.Key, &k.Algorithm, &k.Comment, &suffixes, &k.AccountID, &k.Revoked, &created); err != nil {
		return nil, err
	}
	var err error
	if k.AllowedSuffixes, err = fromJSONList[string](suffixes, "allowed suffixes"); err != nil {
		return nil, err
	}
	k.CreatedAt = fromMicros(created)
	return &k, nil
}

// CreateEABKey inserts k, unbound; the primary key refuses an ID in use.
func (s *Store) CreateEABKey(ctx context.Context, k *storage.EABKey) error {
	if err := records.PrepareEABKey(k); err != nil {
		return fmt.Errorf("create EAB key: %w", err)
	}
	suffixes, err := jsonList(k.AllowedSuffixes)
	if err != nil {
		return fmt.Errorf("create EAB key %q: %w", k.ID, err)
	}
	_, err = s.exec(ctx, `INSERT INTO eab_keys (`+eabCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Key, k.Algorithm, k.Comment, suffixes, k.AccountID, k.Revoked, micros(k.CreatedAt))
	return mapErr(err, fmt.Sprintf("create EAB key %q", k.ID))
}

// GetEABKey reads an EAB key by ID.
func (s *Store) GetEABKey(ctx context.Context, id string) (*storage.EABKey, error) {
	k, err := scanEABKey(s.r.QueryRowContext(ctx, `SELECT `+eabCols+` FROM eab_keys WHERE id = ?`, id))
	if err != nil {
		return nil, notFound(err, "EAB key", id)
	}
	return k, nil
}

// ListEABKeys lists every EAB key, oldest first.
func (s *Store) ListEABKeys(ctx context.Context) ([]*storage.EABKey, error) {
	return queryAll(ctx, s.r, "list EAB keys", scanEABKey, `SELECT `+eabCols+` FROM eab_keys ORDER BY created_at, id`)
}

// RevokeEABKey marks a key revoked. Revoking a revoked key changes nothing and
// is not an error.
func (s *Store) RevokeEABKey(ctx context.Context, id string) error {
	res, err := s.exec(ctx, `UPDATE eab_keys SET revoked = 1 WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("revoke EAB key %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke EAB key %q: %w", id, err)
	} else if n == 0 {
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
	return s.conditional(ctx, "EAB key", id, `SELECT 1 FROM eab_keys WHERE id = ?`,
		`UPDATE eab_keys SET account_id = ? WHERE id = ? AND account_id = '' AND revoked = 0`, accountID, id)
}
