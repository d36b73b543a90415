package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

// An authorization is read in two statements: the authorization rows, then
// their challenges in position order. One joined statement would repeat the
// authorization's columns on every challenge row, and with this driver every
// column read is a cgo call: two narrow statements cost half as much.
const authzCols = `id, account_id, ident_type, ident_value, wildcard, status, expires, created_at, updated_at`

// readAuthorizations runs query, which selects authzCols, and reads the
// challenges of what it found. It returns the authorizations by ID and their
// IDs in the order the query gave them.
func (s *Store) readAuthorizations(ctx context.Context, query string, args ...any) (map[string]*storage.Authorization, []string, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]*storage.Authorization{}
	var order []string
	for rows.Next() {
		var a storage.Authorization
		var expires, created, updated int64
		if err := rows.Scan(&a.ID, &a.AccountID, &a.Identifier.Type, &a.Identifier.Value, &a.Wildcard, &a.Status,
			&expires, &created, &updated); err != nil {
			rows.Close()
			return nil, nil, err
		}
		a.Expires, a.CreatedAt, a.UpdatedAt = fromMicros(expires), fromMicros(created), fromMicros(updated)
		byID[a.ID] = &a
		order = append(order, a.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(order) == 0 {
		return byID, order, nil
	}
	var crows *sql.Rows
	if len(order) == 1 {
		crows, err = s.r.QueryContext(ctx, `SELECT `+challengeCols+` FROM challenges WHERE authz_id = ? ORDER BY position`, order[0])
	} else {
		list, _ := json.Marshal(order)
		crows, err = s.r.QueryContext(ctx, `SELECT `+challengeCols+` FROM challenges
			WHERE authz_id IN (SELECT value FROM json_each(?)) ORDER BY authz_id, position`, string(list))
	}
	if err != nil {
		return nil, nil, err
	}
	defer crows.Close()
	for crows.Next() {
		c, err := scanChallenge(crows)
		if err != nil {
			return nil, nil, err
		}
		if a := byID[c.AuthzID]; a != nil {
			a.Challenges = append(a.Challenges, c)
		}
	}
	return byID, order, crows.Err()
}

// GetAuthorization reads an authorization with its challenges.
func (s *Store) GetAuthorization(ctx context.Context, id string) (*storage.Authorization, error) {
	byID, _, err := s.readAuthorizations(ctx, `SELECT `+authzCols+` FROM authorizations WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("read authorization %q: %w", id, err)
	}
	a, ok := byID[id]
	if !ok {
		return nil, records.NotFound("authorization", id)
	}
	return a, nil
}

// GetAuthorizations reads several authorizations, the IDs passed as one JSON
// array, and returns them in the order of ids.
func (s *Store) GetAuthorizations(ctx context.Context, ids []string) ([]*storage.Authorization, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var byID map[string]*storage.Authorization
	var err error
	if len(ids) == 1 {
		byID, _, err = s.readAuthorizations(ctx, `SELECT `+authzCols+` FROM authorizations WHERE id = ?`, ids[0])
	} else {
		list, _ := json.Marshal(ids)
		byID, _, err = s.readAuthorizations(ctx,
			`SELECT `+authzCols+` FROM authorizations WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	}
	if err != nil {
		return nil, fmt.Errorf("read authorizations: %w", err)
	}
	out := make([]*storage.Authorization, len(ids))
	for i, id := range ids {
		a, ok := byID[id]
		if !ok {
			return nil, records.NotFound("authorization", id)
		}
		out[i] = a
	}
	return out, nil
}

// FindValidAuthorization picks the latest-expiring valid authorization and
// reads it with its challenges.
func (s *Store) FindValidAuthorization(ctx context.Context, accountID string, ident storage.Identifier, wildcard bool, validUntil time.Time) (*storage.Authorization, error) {
	byID, order, err := s.readAuthorizations(ctx, `SELECT `+authzCols+` FROM authorizations
		WHERE account_id = ? AND ident_value = ? AND ident_type = ? AND wildcard = ? AND status = 'valid' AND expires > ?
		ORDER BY expires DESC, id DESC LIMIT 1`,
		accountID, ident.Value, ident.Type, wildcard, micros(validUntil))
	if err != nil {
		return nil, fmt.Errorf("find authorization for %s:%s: %w", ident.Type, ident.Value, err)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("valid authorization of %q for %s:%s: %w", accountID, ident.Type, ident.Value, storage.ErrNotFound)
	}
	return byID[order[0]], nil
}

// UpdateAuthorization writes Status, Expires and UpdatedAt if the status is
// still fromStatus.
func (s *Store) UpdateAuthorization(ctx context.Context, a *storage.Authorization, fromStatus string) error {
	return s.c.do(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		return updateAuthorization(ctx, tx, a, fromStatus)
	})
}

func updateAuthorization(ctx context.Context, tx *sql.Tx, a *storage.Authorization, fromStatus string) error {
	return conditionalTx(ctx, tx, "authorization", a.ID, `SELECT 1 FROM authorizations WHERE id = ?`,
		`UPDATE authorizations SET status = ?, expires = ?, updated_at = ? WHERE id = ? AND status = ?`,
		a.Status, micros(a.Expires), micros(records.Stamp(a.UpdatedAt)), a.ID, fromStatus)
}

// CountFailedAuthorizations counts authorizations for ident that became
// invalid at or after since: an invalid authorization's updated_at is when
// it failed.
func (s *Store) CountFailedAuthorizations(ctx context.Context, ident storage.Identifier, since time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM authorizations
		WHERE status = 'invalid' AND ident_value = ? AND ident_type = ? AND updated_at >= ?`,
		ident.Value, ident.Type, micros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count failed authorizations for %s:%s: %w", ident.Type, ident.Value, err)
	}
	return n, nil
}

// insertAuthorization inserts a prepared authorization and its challenges.
func insertAuthorization(ctx context.Context, tx *sql.Tx, a *storage.Authorization) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO authorizations (`+authzCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.AccountID, a.Identifier.Type, a.Identifier.Value, a.Wildcard, a.Status,
		micros(a.Expires), micros(a.CreatedAt), micros(a.UpdatedAt))
	if err != nil {
		return mapErr(err, fmt.Sprintf("authorization %q", a.ID))
	}
	for i, c := range a.Challenges {
		_, err := tx.ExecContext(ctx, `INSERT INTO challenges (id, authz_id, position, type, token, status, validated, error,
			attempts, next_attempt, lease_until, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, a.ID, i, c.Type, c.Token, c.Status, optMicros(c.Validated), blob(c.Error),
			c.Attempts, micros(c.NextAttempt), micros(c.LeaseUntil), micros(c.UpdatedAt))
		if err != nil {
			return mapErr(err, fmt.Sprintf("challenge %q of authorization %q", c.ID, a.ID))
		}
	}
	return nil
}

// CreateAuthorization inserts a pre-authorization with its challenges.
func (s *Store) CreateAuthorization(ctx context.Context, a *storage.Authorization) error {
	if err := records.PrepareAuthorization(a); err != nil {
		return fmt.Errorf("create authorization: %w", err)
	}
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error { return insertAuthorization(ctx, tx, a) })
}
