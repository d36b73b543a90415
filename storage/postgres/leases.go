package postgres

import (
	"context"
	"fmt"
	"time"
)

// TryLease takes or renews a lease in one upsert: the row is written only if
// it is new, held by holder, or expired, and the changed-row count says which.
// Nodes racing for a free lease queue on the primary key; the losers then
// evaluate the condition against the winner's row and change nothing.
func (s *Store) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, held_until = EXCLUDED.held_until
		WHERE leases.holder = EXCLUDED.holder OR leases.held_until < $4`,
		name, holder, ts(now.Add(ttl)), ts(now))
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	return tag.RowsAffected() > 0, nil
}
