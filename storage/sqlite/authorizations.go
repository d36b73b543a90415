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

// An authorization is read with its challenges in one statement: the
// authorization's columns joined with each challenge's, in position order.
// An authorization without challenges comes as one row of NULL challenge
// columns.
const authzJoin = `SELECT a.id, a.account_id, a.ident_type, a.ident_value, a.wildcard, a.status, a.expires, a.created_at, a.updated_at,
	c.id, c.type, c.token, c.status, c.validated, c.error, c.attempts, c.next_attempt, c.lease_until, c.updated_at
	FROM authz a LEFT JOIN challenges c ON c.authz_id = a.id`

const authzCols = `id, account_id, ident_type, ident_value, wildcard, status, expires, created_at, updated_at`

// readAuthorizations runs a query built on authzJoin, whose CTE "authz" selects
// the authorizations, and returns them by ID.
func (s *Store) readAuthorizations(ctx context.Context, query string, args ...any) (map[string]*storage.Authorization, []string, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	byID := map[string]*storage.Authorization{}
	var order []string
	for rows.Next() {
		var a storage.Authorization
		var expires, created, updated int64
		var cID, cType, cToken, cStatus sql.NullString
		var cValidated, cAttempts, cNext, cLease, cUpdated sql.NullInt64
		var cError []byte
		if err := rows.Scan(&a.ID, &a.AccountID, &a.Identifier.Type, &a.Identifier.Value, &a.Wildcard, &a.Status,
			&expires, &created, &updated,
			&cID, &cType, &cToken, &cStatus, &cValidated, &cError, &cAttempts, &cNext, &cLease, &cUpdated); err != nil {
			return nil, nil, err
		}
		cur, ok := byID[a.ID]
		if !ok {
			a.Expires, a.CreatedAt, a.UpdatedAt = fromMicros(expires), fromMicros(created), fromMicros(updated)
			cur = &a
			byID[a.ID] = cur
			order = append(order, a.ID)
		}
		if cID.Valid {
			cur.Challenges = append(cur.Challenges, &storage.Challenge{
				ID: cID.String, AuthzID: cur.ID, Type: cType.String, Token: cToken.String, Status: cStatus.String,
				Validated: fromOptMicros(cValidated), Error: cError, Attempts: int(cAttempts.Int64),
				NextAttempt: fromMicros(cNext.Int64), LeaseUntil: fromMicros(cLease.Int64), UpdatedAt: fromMicros(cUpdated.Int64),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return byID, order, nil
}

// GetAuthorization reads an authorization with its challenges.
func (s *Store) GetAuthorization(ctx context.Context, id string) (*storage.Authorization, error) {
	byID, _, err := s.readAuthorizations(ctx,
		`WITH authz AS (SELECT `+authzCols+` FROM authorizations WHERE id = ?) `+authzJoin+` ORDER BY c.position`, id)
	if err != nil {
		return nil, fmt.Errorf("read authorization %q: %w", id, err)
	}
	a, ok := byID[id]
	if !ok {
		return nil, records.NotFound("authorization", id)
	}
	return a, nil
}

// GetAuthorizations reads several authorizations in one statement, the IDs
// passed as one JSON array, and returns them in the order of ids.
func (s *Store) GetAuthorizations(ctx context.Context, ids []string) ([]*storage.Authorization, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("read authorizations: %w", err)
	}
	byID, _, err := s.readAuthorizations(ctx,
		`WITH authz AS (SELECT `+authzCols+` FROM authorizations WHERE id IN (SELECT value FROM json_each(?))) `+
			authzJoin+` ORDER BY a.id, c.position`, string(list))
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

// FindValidAuthorization picks the latest-expiring valid authorization in the
// CTE and reads it with its challenges, in one statement.
func (s *Store) FindValidAuthorization(ctx context.Context, accountID string, ident storage.Identifier, wildcard bool, validUntil time.Time) (*storage.Authorization, error) {
	byID, order, err := s.readAuthorizations(ctx, `WITH authz AS (SELECT `+authzCols+` FROM authorizations
		WHERE account_id = ? AND ident_value = ? AND ident_type = ? AND wildcard = ? AND status = 'valid' AND expires > ?
		ORDER BY expires DESC, id DESC LIMIT 1) `+authzJoin+` ORDER BY c.position`,
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
	return s.conditional(ctx, "authorization", a.ID, `SELECT 1 FROM authorizations WHERE id = ?`,
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
