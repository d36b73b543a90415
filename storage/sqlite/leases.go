package sqlite

import (
	"context"
	"fmt"
	"time"
)

// TryLease takes or renews a lease in one upsert: the row is written only if
// it is new, held by holder, or expired, and the changed-row count says which.
func (s *Store) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := s.exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, held_until = excluded.held_until
		WHERE leases.holder = excluded.holder OR leases.held_until < ?`,
		name, holder, micros(now.Add(ttl)), micros(now))
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("lease %q for %q: %w", name, holder, err)
	}
	return n > 0, nil
}
