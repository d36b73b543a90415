package postgres

import (
	"context"
	"fmt"
	"time"
)

// RedeemNonce inserts nonce; the primary key refuses a second use.
func (s *Store) RedeemNonce(ctx context.Context, nonce string, expires time.Time) error {
	return s.insertOnce(ctx, fmt.Sprintf("redeem nonce %q", nonce),
		`INSERT INTO nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT DO NOTHING`, nonce, ts(expires))
}
