package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
// the authorizations, and returns them by ID and in the order read.
func (s *Store) readAuthorizations(ctx context.Context, query string, args ...any) (map[string]*storage.Authorization, []string, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	byID := map[string]*storage.Authorization{}
	var order []string
	for rows.Next() {
		var a storage.Authorization
		var cID, cType, cToken, cStatus *string
		var cValidated, cNext, cLease, cUpdated *time.Time
		var cAttempts *int32
		var cError []byte
		if err := rows.Scan(&a.ID, &a.AccountID, &a.Identifier.Type, &a.Identifier.Value, &a.Wildcard, &a.Status,
			&a.Expires, &a.CreatedAt, &a.UpdatedAt,
			&cID, &cType, &cToken, &cStatus, &cValidated, &cError, &cAttempts, &cNext, &cLease, &cUpdated); err != nil {
			return nil, nil, err
		}
		cur, ok := byID[a.ID]
		if !ok {
			a.Expires, a.CreatedAt, a.UpdatedAt = fromTS(a.Expires), fromTS(a.CreatedAt), fromTS(a.UpdatedAt)
			cur = &a
			byID[a.ID] = cur
			order = append(order, a.ID)
		}
		if cID != nil {
			cur.Challenges = append(cur.Challenges, &storage.Challenge{
				ID: *cID, AuthzID: cur.ID, Type: *cType, Token: *cToken, Status: *cStatus,
				Validated: fromOptTS(cValidated), Error: records.NilIfEmpty(cError), Attempts: int(*cAttempts),
				NextAttempt: fromTS(*cNext), LeaseUntil: fromTS(*cLease), UpdatedAt: fromTS(*cUpdated),
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
		`WITH authz AS (SELECT `+authzCols+` FROM authorizations WHERE id = $1) `+authzJoin+` ORDER BY c.position`, id)
	if err != nil {
		return nil, fmt.Errorf("read authorization %q: %w", id, err)
	}
	a, ok := byID[id]
	if !ok {
		return nil, records.NotFound("authorization", id)
	}
	return a, nil
}

// GetAuthorizations reads several authorizations in one statement and returns
// them in the order of ids.
func (s *Store) GetAuthorizations(ctx context.Context, ids []string) ([]*storage.Authorization, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	byID, _, err := s.readAuthorizations(ctx,
		`WITH authz AS (SELECT `+authzCols+` FROM authorizations WHERE id = ANY($1)) `+authzJoin+` ORDER BY a.id, c.position`, ids)
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
		WHERE account_id = $1 AND ident_value = $2 AND ident_type = $3 AND wildcard = $4 AND status = 'valid' AND expires > $5
		ORDER BY expires DESC, id DESC LIMIT 1) `+authzJoin+` ORDER BY c.position`,
		accountID, ident.Value, ident.Type, wildcard, ts(validUntil))
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
	return updateAuthorization(ctx, s.pool, a, fromStatus)
}

func updateAuthorization(ctx context.Context, q querier, a *storage.Authorization, fromStatus string) error {
	return conditionalOn(ctx, q, "authorization", a.ID, `SELECT 1 FROM authorizations WHERE id = $1`,
		`UPDATE authorizations SET status = $1, expires = $2, updated_at = $3 WHERE id = $4 AND status = $5`,
		a.Status, ts(a.Expires), records.Stamp(a.UpdatedAt), a.ID, fromStatus)
}

// CountFailedAuthorizations counts authorizations for ident that became
// invalid at or after since: an invalid authorization's updated_at is when
// it failed.
func (s *Store) CountFailedAuthorizations(ctx context.Context, ident storage.Identifier, since time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM authorizations
		WHERE status = 'invalid' AND ident_value = $1 AND ident_type = $2 AND updated_at >= $3`,
		ident.Value, ident.Type, ts(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count failed authorizations for %s:%s: %w", ident.Type, ident.Value, err)
	}
	return n, nil
}

// queueAuthorization queues the inserts of a prepared authorization and its
// challenges.
func queueAuthorization(b *pgx.Batch, a *storage.Authorization) {
	queueAuthorizations(b, []*storage.Authorization{a})
}

// queueAuthorizations queues the inserts of authzs and their challenges: two
// statements, each taking its rows as parallel arrays (unnest), so that an
// order of 100 identifiers costs the server two statements, not 400.
func queueAuthorizations(b *pgx.Batch, authzs []*storage.Authorization) {
	if len(authzs) == 0 {
		return
	}
	var (
		ids, accts, types, values, statuses []string
		wild                                []bool
		expires, created, updated           []time.Time
	)
	var (
		cIDs, cAuthz, cTypes, cTokens, cStatuses []string
		cPos, cAttempts                          []int32
		cValidated                               []*time.Time
		cErrors                                  [][]byte
		cNext, cLease, cUpdated                  []time.Time
	)
	for _, a := range authzs {
		ids, accts, types, values = append(ids, a.ID), append(accts, a.AccountID), append(types, a.Identifier.Type), append(values, a.Identifier.Value)
		wild, statuses = append(wild, a.Wildcard), append(statuses, a.Status)
		expires, created, updated = append(expires, ts(a.Expires)), append(created, ts(a.CreatedAt)), append(updated, ts(a.UpdatedAt))
		for i, c := range a.Challenges {
			cIDs, cAuthz, cPos, cTypes, cTokens, cStatuses = append(cIDs, c.ID), append(cAuthz, a.ID), append(cPos, int32(i)),
				append(cTypes, c.Type), append(cTokens, c.Token), append(cStatuses, c.Status)
			var validated *time.Time
			if !c.Validated.IsZero() {
				v := ts(c.Validated)
				validated = &v
			}
			var errBytes []byte
			if len(c.Error) > 0 {
				errBytes = c.Error
			}
			cValidated, cErrors, cAttempts = append(cValidated, validated), append(cErrors, errBytes), append(cAttempts, int32(c.Attempts))
			cNext, cLease, cUpdated = append(cNext, ts(c.NextAttempt)), append(cLease, ts(c.LeaseUntil)), append(cUpdated, ts(c.UpdatedAt))
		}
	}
	b.Queue(`INSERT INTO authorizations (`+authzCols+`)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])`,
		ids, accts, types, values, wild, statuses, expires, created, updated)
	if len(cIDs) == 0 {
		return
	}
	b.Queue(`INSERT INTO challenges (id, authz_id, position, type, token, status, validated, error,
		attempts, next_attempt, lease_until, updated_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::bytea[],
		$9::integer[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[])`,
		cIDs, cAuthz, cPos, cTypes, cTokens, cStatuses, cValidated, cErrors, cAttempts, cNext, cLease, cUpdated)
}

// CreateAuthorization inserts a pre-authorization with its challenges, in one
// batch the server runs as one transaction.
func (s *Store) CreateAuthorization(ctx context.Context, a *storage.Authorization) error {
	if err := records.PrepareAuthorization(a); err != nil {
		return fmt.Errorf("create authorization: %w", err)
	}
	b := &pgx.Batch{}
	queueAuthorization(b, a)
	return mapErr(s.pool.SendBatch(ctx, b).Close(), fmt.Sprintf("create authorization %q", a.ID))
}

// FindValidAuthorizations picks the latest-expiring valid authorization of
// the account per identifier named (DISTINCT ON in the CTE) and reads them
// with their challenges, in one statement whatever the number of lookups.
func (s *Store) FindValidAuthorizations(ctx context.Context, accountID string, lookups []storage.AuthzLookup, validUntil time.Time) ([]*storage.Authorization, error) {
	out := make([]*storage.Authorization, len(lookups))
	if len(lookups) == 0 {
		return out, nil
	}
	values := make([]string, len(lookups))
	for i, l := range lookups {
		values[i] = l.Identifier.Value
	}
	byID, order, err := s.readAuthorizations(ctx, `WITH authz AS (
		SELECT DISTINCT ON (ident_type, ident_value, wildcard) `+authzCols+` FROM authorizations
		WHERE account_id = $1 AND ident_value = ANY($2) AND status = 'valid' AND expires > $3
		ORDER BY ident_type, ident_value, wildcard, expires DESC, id DESC) `+authzJoin+` ORDER BY a.id, c.position`,
		accountID, values, ts(validUntil))
	if err != nil {
		return nil, fmt.Errorf("find authorizations of %q for %d identifiers: %w", accountID, len(lookups), err)
	}
	records.MatchLookups(out, lookups, byID, order)
	return out, nil
}

// CountFailedAuthorizationsEach counts, in one statement, the authorizations
// that became invalid at or after since for each identifier.
func (s *Store) CountFailedAuthorizationsEach(ctx context.Context, idents []storage.Identifier, since time.Time) ([]int, error) {
	out := make([]int, len(idents))
	if len(idents) == 0 {
		return out, nil
	}
	values := make([]string, len(idents))
	for i, id := range idents {
		values[i] = id.Value
	}
	rows, err := s.pool.Query(ctx, `SELECT ident_type, ident_value, COUNT(*) FROM authorizations
		WHERE status = 'invalid' AND ident_value = ANY($1) AND updated_at >= $2
		GROUP BY ident_type, ident_value`, values, ts(since))
	if err != nil {
		return nil, fmt.Errorf("count failed authorizations for %d identifiers: %w", len(idents), err)
	}
	defer rows.Close()
	counts := map[storage.Identifier]int{}
	for rows.Next() {
		var id storage.Identifier
		var n int
		if err := rows.Scan(&id.Type, &id.Value, &n); err != nil {
			return nil, fmt.Errorf("count failed authorizations: %w", err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count failed authorizations: %w", err)
	}
	for i, id := range idents {
		out[i] = counts[id]
	}
	return out, nil
}
