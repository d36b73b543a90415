package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testNonces(t *testing.T, s storage.Store) {
	ctx := t.Context()
	expires := at(time.Hour)
	must(t, s.RedeemNonce(ctx, "nonce-1", expires), "first redemption")
	wantErr(t, s.RedeemNonce(ctx, "nonce-1", expires), storage.ErrConflict, "second redemption")
	wantErr(t, s.RedeemNonce(ctx, "nonce-1", at(2*time.Hour)), storage.ErrConflict, "redemption with another expiry")
	must(t, s.RedeemNonce(ctx, "nonce-2", expires), "another nonce")
}

// testNonceRace: a replayed request sent to many front ends at once is
// accepted exactly once.
func testNonceRace(t *testing.T, s storage.Store) {
	errs := race(20, func(int) error {
		return s.RedeemNonce(t.Context(), "contested", at(time.Hour))
	})
	if ok, lost := tally(t, errs, storage.ErrConflict); ok != 1 || lost != 19 {
		t.Fatalf("20 redemptions of one nonce: %d succeeded, %d conflicted; want 1 and 19", ok, lost)
	}
}
