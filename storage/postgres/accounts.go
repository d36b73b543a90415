package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const accountCols = `id, key_id, key, contact, status, terms_agreed, eab_key_id, created_ip, created_at`

func scanAccount(row scanner) (*storage.Account, error) {
	var a storage.Account
	if err := row.Scan(&a.ID, &a.KeyID, &a.Key, &a.Contact, &a.Status, &a.TermsAgreed, &a.EABKeyID, &a.CreatedIP, &a.CreatedAt); err != nil {
		return nil, err
	}
	a.Contact = records.NilIfEmpty(a.Contact)
	a.CreatedAt = fromTS(a.CreatedAt)
	return &a, nil
}

// CreateAccount inserts a; the unique key_id refuses a key already in use.
func (s *Store) CreateAccount(ctx context.Context, a *storage.Account) error {
	if err := records.PrepareAccount(a); err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	return s.insertOnce(ctx, fmt.Sprintf("create account %q with key %q", a.ID, a.KeyID),
		`INSERT INTO accounts (`+accountCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		a.ID, a.KeyID, bytea(a.Key), textArray(a.Contact), a.Status, a.TermsAgreed, a.EABKeyID, a.CreatedIP, ts(a.CreatedAt))
}

// GetAccount reads an account by ID.
func (s *Store) GetAccount(ctx context.Context, id string) (*storage.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
	if err != nil {
		return nil, notFound(err, "account", id)
	}
	return a, nil
}

// GetAccountByKeyID reads an account by its key's thumbprint.
func (s *Store) GetAccountByKeyID(ctx context.Context, keyID string) (*storage.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE key_id = $1`, keyID))
	if err != nil {
		return nil, notFound(err, "account with key", keyID)
	}
	return a, nil
}

// UpdateAccount writes Contact, Status and TermsAgreed if the status is still
// fromStatus.
func (s *Store) UpdateAccount(ctx context.Context, a *storage.Account, fromStatus string) error {
	return s.conditional(ctx, "account", a.ID, `SELECT 1 FROM accounts WHERE id = $1`,
		`UPDATE accounts SET contact = $1, status = $2, terms_agreed = $3 WHERE id = $4 AND status = $5`,
		textArray(a.Contact), a.Status, a.TermsAgreed, a.ID, fromStatus)
}

// RolloverAccountKey swaps the key if the current one is oldKeyID; the unique
// key_id refuses a key another account holds.
func (s *Store) RolloverAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, newKey []byte) error {
	return s.conditional(ctx, "account", id, `SELECT 1 FROM accounts WHERE id = $1`,
		`UPDATE accounts SET key_id = $1, key = $2 WHERE id = $3 AND key_id = $4`,
		newKeyID, bytea(newKey), id, oldKeyID)
}

// CountAccountsByIP counts accounts created from ip at or after since.
func (s *Store) CountAccountsByIP(ctx context.Context, ip string, since time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE created_ip = $1 AND created_at >= $2`,
		ip, ts(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count accounts from %s: %w", ip, err)
	}
	return n, nil
}
