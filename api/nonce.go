package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/anvil-pki/anvil/acme"
)

// NonceSource issues and redeems anti-replay nonces (RFC 8555 6.5): Nonces
// when several front ends share a database, LocalNonces for one process alone.
type NonceSource interface {
	// New returns a fresh nonce.
	New() string
	// Redeem accepts a nonce once, or returns a badNonce problem.
	Redeem(ctx context.Context, nonce string) error
}

// NonceStore remembers redeemed nonces until they expire (storage.Store is one).
type NonceStore interface {
	RedeemNonce(ctx context.Context, nonce string, expires time.Time) error
}

// Nonces issues and redeems anti-replay nonces (RFC 8555 6.5).
//
// A nonce is its expiry, 96 random bits and a MAC over both under a key that
// every front end shares: issuing one costs no storage at all, and any front end
// can tell a nonce it could have issued. Redeeming one inserts it into the store
// under a unique constraint, so a nonce is accepted once, by whichever front end
// sees it first; used nonces are forgotten by the store after they expire,
// when the expiry check refuses them anyway.
type Nonces struct {
	key      []byte
	lifetime time.Duration
	store    NonceStore
	now      func() time.Time
}

const (
	nonceRandom = 12
	nonceMAC    = 12
	nonceLen    = 8 + nonceRandom + nonceMAC
)

// NewNonces returns a nonce service. key must be at least 32 bytes and the same
// on every front end; lifetime bounds how long an unused nonce stays good.
func NewNonces(key []byte, lifetime time.Duration, store NonceStore) (*Nonces, error) {
	if len(key) < 32 {
		return nil, errors.New("nonce key must be at least 32 bytes")
	}
	if lifetime <= 0 {
		lifetime = 30 * time.Minute
	}
	return &Nonces{key: key, lifetime: lifetime, store: store, now: time.Now}, nil
}

// New returns a fresh nonce.
func (n *Nonces) New() string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().Add(n.lifetime).Unix()))
	rand.Read(b[8 : 8+nonceRandom])
	copy(b[8+nonceRandom:], n.mac(b[:8+nonceRandom]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (n *Nonces) mac(msg []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(msg)
	return m.Sum(nil)[:nonceMAC]
}

// Redeem accepts a nonce once, or returns a badNonce problem.
func (n *Nonces) Redeem(ctx context.Context, nonce string) error {
	if nonce == "" {
		return acme.BadNonce("the JWS has no nonce")
	}
	// Strict: the last of a nonce's 43 characters carries 2 spare bits, and a
	// lenient decoder would take four spellings of one nonce, each a new row
	// under the store's unique constraint.
	b, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return acme.BadNonce("nonce %q is not one this server issued", truncate(nonce, 64))
	}
	if !hmac.Equal(b[8+nonceRandom:], n.mac(b[:8+nonceRandom])) {
		return acme.BadNonce("nonce %q is not one this server issued", truncate(nonce, 64))
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	if n.now().After(expires) {
		return acme.BadNonce("nonce expired")
	}
	if err := n.store.RedeemNonce(ctx, nonce, expires); err != nil {
		if isConflict(err) {
			return acme.BadNonce("nonce was already used")
		}
		return acme.ServerInternal(err, "storage error redeeming the nonce")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
