package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const challengeCols = `id, authz_id, type, token, status, validated, error, attempts, next_attempt, lease_until, updated_at`

func scanChallenge(row scanner) (*storage.Challenge, error) {
	var c storage.Challenge
	var validated *time.Time
	var attempts int32
	if err := row.Scan(&c.ID, &c.AuthzID, &c.Type, &c.Token, &c.Status, &validated, &c.Error, &attempts,
		&c.NextAttempt, &c.LeaseUntil, &c.UpdatedAt); err != nil {
		return nil, err
	}
	c.Attempts = int(attempts)
	c.Error = records.NilIfEmpty(c.Error)
	c.Validated = fromOptTS(validated)
	c.NextAttempt, c.LeaseUntil, c.UpdatedAt = fromTS(c.NextAttempt), fromTS(c.LeaseUntil), fromTS(c.UpdatedAt)
	return &c, nil
}

// GetChallenge reads a challenge by ID.
func (s *Store) GetChallenge(ctx context.Context, id string) (*storage.Challenge, error) {
	c, err := scanChallenge(s.pool.QueryRow(ctx, `SELECT `+challengeCols+` FROM challenges WHERE id = $1`, id))
	if err != nil {
		return nil, notFound(err, "challenge", id)
	}
	return c, nil
}

// UpdateChallenge writes the mutable fields of c if its status is still
// fromStatus.
func (s *Store) UpdateChallenge(ctx context.Context, c *storage.Challenge, fromStatus string) error {
	return updateChallenge(ctx, s.pool, c, fromStatus, s.leaseHolder())
}

// RecordValidation writes the challenge and the authorization, each if it is
// still in its from-state, atomically: one statement, one round trip, where
// a transaction took four (BEGIN, two UPDATEs, COMMIT). Each UPDATE re-checks
// its row's state as conditional does. When either changed no row, the
// division by the product of their counts fails the statement, which undoes
// the other; the follow-up reads, off the hot path, say which was not as
// expected.
func (s *Store) RecordValidation(ctx context.Context, c *storage.Challenge, fromChallenge string, a *storage.Authorization, fromAuthz string) error {
	var one int
	err := s.pool.QueryRow(ctx, `WITH ch AS (UPDATE challenges SET status = $1, validated = $2, error = $3, attempts = $4,
			next_attempt = $5, lease_until = $6, updated_at = $7, lease_holder = $10 WHERE id = $8 AND status = $9 RETURNING 1),
		az AS (UPDATE authorizations SET status = $11, expires = $12, updated_at = $13 WHERE id = $14 AND status = $15 RETURNING 1)
		SELECT (1 / ((SELECT count(*) FROM ch) * (SELECT count(*) FROM az)))::int`,
		c.Status, optTS(c.Validated), bytea(c.Error), c.Attempts, ts(c.NextAttempt), ts(c.LeaseUntil),
		records.Stamp(c.UpdatedAt), c.ID, fromChallenge, s.leaseHolder(),
		a.Status, ts(a.Expires), records.Stamp(a.UpdatedAt), a.ID, fromAuthz).Scan(&one)
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) || pe.Code != divisionByZero {
		return mapErr(err, fmt.Sprintf("record validation of challenge %q", c.ID))
	}
	for _, r := range []struct{ what, table, id, from string }{
		{"challenge", "challenges", c.ID, fromChallenge},
		{"authorization", "authorizations", a.ID, fromAuthz},
	} {
		var status string
		// The table names are this function's own constants.
		if err := s.pool.QueryRow(ctx, `SELECT status FROM `+r.table+` WHERE id = $1`, r.id).Scan(&status); err != nil {
			return notFound(err, r.what, r.id)
		}
		if status != r.from {
			return records.Conflict("%s %q is not in the expected state", r.what, r.id)
		}
	}
	return records.Conflict("challenge %q or authorization %q is not in the expected state", c.ID, a.ID)
}

func updateChallenge(ctx context.Context, q querier, c *storage.Challenge, fromStatus, holder string) error {
	return conditionalOn(ctx, q, "challenge", c.ID, `SELECT 1 FROM challenges WHERE id = $1`,
		`UPDATE challenges SET status = $1, validated = $2, error = $3, attempts = $4, next_attempt = $5, lease_until = $6,
		updated_at = $7, lease_holder = $10 WHERE id = $8 AND status = $9`,
		c.Status, optTS(c.Validated), bytea(c.Error), c.Attempts, ts(c.NextAttempt), ts(c.LeaseUntil),
		records.Stamp(c.UpdatedAt), c.ID, fromStatus, holder)
}

// ClaimChallenges leases due validations. SKIP LOCKED passes over rows
// another node is claiming; a row it claimed meanwhile fails the re-checked
// lease condition. Either way no row goes to two nodes within a lease.
func (s *Store) ClaimChallenges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Challenge, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryAll(ctx, s.pool, "claim challenges", scanChallenge, `UPDATE challenges SET lease_until = $1, lease_holder = $4
		WHERE id IN (SELECT id FROM challenges WHERE status = 'processing' AND next_attempt <= $2 AND lease_until < $2
			ORDER BY next_attempt LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+challengeCols,
		ts(now.Add(lease)), ts(now), limit, s.leaseHolder())
}
