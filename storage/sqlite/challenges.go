package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

const challengeCols = `id, authz_id, type, token, status, validated, error, attempts, next_attempt, lease_until, updated_at`

func scanChallenge(row scanner) (*storage.Challenge, error) {
	var c storage.Challenge
	var validated sql.NullInt64
	var next, lease, updated int64
	if err := row.Scan(&c.ID, &c.AuthzID, &c.Type, &c.Token, &c.Status, &validated, &c.Error, &c.Attempts,
		&next, &lease, &updated); err != nil {
		return nil, err
	}
	c.Validated = fromOptMicros(validated)
	c.NextAttempt, c.LeaseUntil, c.UpdatedAt = fromMicros(next), fromMicros(lease), fromMicros(updated)
	return &c, nil
}

// GetChallenge reads a challenge by ID.
func (s *Store) GetChallenge(ctx context.Context, id string) (*storage.Challenge, error) {
	c, err := scanChallenge(s.r.QueryRowContext(ctx, `SELECT `+challengeCols+` FROM challenges WHERE id = ?`, id))
	if err != nil {
		return nil, notFound(err, "challenge", id)
	}
	return c, nil
}

// UpdateChallenge writes the mutable fields of c if its status is still
// fromStatus.
func (s *Store) UpdateChallenge(ctx context.Context, c *storage.Challenge, fromStatus string) error {
	return s.c.do(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		return updateChallenge(ctx, tx, c, fromStatus, s.leaseHolder())
	})
}

func updateChallenge(ctx context.Context, tx *sql.Tx, c *storage.Challenge, fromStatus, holder string) error {
	return conditionalTx(ctx, tx, "challenge", c.ID, `SELECT 1 FROM challenges WHERE id = ?`,
		`UPDATE challenges SET status = ?, validated = ?, error = ?, attempts = ?, next_attempt = ?, lease_until = ?, lease_holder = ?, updated_at = ?
		WHERE id = ? AND status = ?`,
		c.Status, optMicros(c.Validated), blob(c.Error), c.Attempts, micros(c.NextAttempt), micros(c.LeaseUntil), holder,
		micros(records.Stamp(c.UpdatedAt)), c.ID, fromStatus)
}

// RecordValidation writes the challenge and the authorization in one
// operation of the group commit, inside its own savepoint.
func (s *Store) RecordValidation(ctx context.Context, c *storage.Challenge, fromChallenge string, a *storage.Authorization, fromAuthz string) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := updateChallenge(ctx, tx, c, fromChallenge, s.leaseHolder()); err != nil {
			return err
		}
		return updateAuthorization(ctx, tx, a, fromAuthz)
	})
}

// ClaimChallenges leases due validations in one statement: on the single
// writer connection no other claim can interleave.
func (s *Store) ClaimChallenges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Challenge, error) {
	if limit <= 0 {
		return nil, nil
	}
	cs, err := queryWrite(ctx, s, scanChallenge, `UPDATE challenges SET lease_until = ?, lease_holder = ?
		WHERE id IN (SELECT id FROM challenges WHERE status = 'processing' AND next_attempt <= ? AND lease_until < ?
			ORDER BY next_attempt LIMIT ?)
		RETURNING `+challengeCols,
		micros(now.Add(lease)), s.leaseHolder(), micros(now), micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("claim challenges: %w", err)
	}
	return cs, nil
}
