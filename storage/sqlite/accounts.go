package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const accountCols = `id, key_id, key, contact, status, terms_agreed, eab_key_id, created_ip, created_at`

func scanAccount(row scanner) (*storage.Account, error) {
	var a storage.Account
	var contact sql.NullString
	var created int64
	if err := row.Scan(&a.ID, &a.KeyID, &a.Key, &contact, &a.Status, &a.TermsAgreed, &a.EABKeyID, &a.CreatedIP, &created); err != nil {
		return nil, err
	}
	var err error
	if a.Contact, err = fromJSONList[string](contact, "contact"); err != nil {
		return nil, err
	}
	a.CreatedAt = fromMicros(created)
	return &a, nil
}

// CreateAccount inserts a; the unique key_id refuses a key already in use.
func (s *Store) CreateAccount(ctx context.Context, a *storage.Account) error {
	if err := records.PrepareAccount(a); err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	contact, err := jsonList(a.Contact)
	if err != nil {
		return fmt.Errorf("create account %q: %w", a.ID, err)
	}
	_, err = s.exec(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.KeyID, blob(a.Key), contact, a.Status, a.TermsAgreed, a.EABKeyID, a.CreatedIP, micros(a.CreatedAt))
	return mapErr(err, fmt.Sprintf("create account %q", a.ID))
}

// GetAccount reads an account by ID, from the cache when it holds it.
func (s *Store) GetAccount(ctx context.Context, id string) (*storage.Account, error) {
	a, gen := s.accounts.get(id)
	if a != nil {
		return a, nil
	}
	a, err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	if err != nil {
		return nil, notFound(err, "account", id)
	}
	s.accounts.put(a, gen)
	return a, nil
}

// GetAccountByKeyID reads an account by its key's thumbprint.
func (s *Store) GetAccountByKeyID(ctx context.Context, keyID string) (*storage.Account, error) {
	a, err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE key_id = ?`, keyID))
	if err != nil {
		return nil, notFound(err, "account with key", keyID)
	}
	return a, nil
}

// UpdateAccount writes Contact, Status and TermsAgreed if the status is still
// fromStatus.
func (s *Store) UpdateAccount(ctx context.Context, a *storage.Account, fromStatus string) error {
	contact, err := jsonList(a.Contact)
	if err != nil {
		return fmt.Errorf("update account %q: %w", a.ID, err)
	}
	s.accounts.forget(a.ID)
	defer s.accounts.forget(a.ID)
	return s.conditional(ctx, "account", a.ID, `SELECT 1 FROM accounts WHERE id = ?`,
		`UPDATE accounts SET contact = ?, status = ?, terms_agreed = ? WHERE id = ? AND status = ?`,
		contact, a.Status, a.TermsAgreed, a.ID, fromStatus)
}

// RolloverAccountKey swaps the key if the current one is oldKeyID; the unique
// key_id refuses a key another account holds.
func (s *Store) RolloverAccountKey(ctx context.Context, id, oldKeyID, newKeyID string, newKey []byte) error {
	s.accounts.forget(id)
	defer s.accounts.forget(id)
	return s.conditional(ctx, "account", id, `SELECT 1 FROM accounts WHERE id = ?`,
		`UPDATE accounts SET key_id = ?, key = ? WHERE id = ? AND key_id = ?`,
		newKeyID, blob(newKey), id, oldKeyID)
}

// CountAccountsByIP counts accounts created from ip at or after since.
func (s *Store) CountAccountsByIP(ctx context.Context, ip string, since time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE created_ip = ? AND created_at >= ?`,
		ip, micros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count accounts from %s: %w", ip, err)
	}
	return n, nil
}
