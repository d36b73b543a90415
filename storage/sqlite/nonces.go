package sqlite

import (
	"context"
	"fmt"
	"time"
)

// RedeemNonce inserts nonce; the primary key refuses a second use.
func (s *Store) RedeemNonce(ctx context.Context, nonce string, expires time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO nonces (nonce, expires) VALUES (?, ?)`, nonce, micros(expires))
	return mapErr(err, fmt.Sprintf("redeem nonce %q", nonce))
}
