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
	key      nonceKey
	lifetime time.Duration
	store    NonceStore
	now      func() time.Time
}

// A shared nonce's body: its expiry, then random bits.
const (
	nonceRandom  = 12
	nonceBodyLen = 8 + nonceRandom
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
	var b [nonceBodyLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().Add(n.lifetime).Unix()))
	rand.Read(b[8:])
	return n.key.seal(b[:])
}

// Redeem accepts a nonce once, or returns a badNonce problem.
func (n *Nonces) Redeem(ctx context.Context, nonce string) error {
	_, expires, err := n.key.open(nonce, nonceBodyLen, 0, n.now())
	if err != nil {
		return err
	}
	if err := n.store.RedeemNonce(ctx, nonce, expires); err != nil {
		if isConflict(err) {
			return acme.BadNonce("the nonce was already used")
		}
		return acme.ServerInternal(err, "storage error redeeming the nonce")
	}
	return nil
}

// nonceKey MACs the bodies of nonces. A nonce is its body and the MAC's first
// nonceMAC bytes, base64url.
type nonceKey []byte

const nonceMAC = 12

func (k nonceKey) mac(body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write(body)
	return m.Sum(nil)[:nonceMAC]
}

// seal returns the nonce of body.
func (k nonceKey) seal(body []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(body, k.mac(body)...))
}

// open returns the body of a nonce sealed under k with a body of bodyLen
// bytes, and the expiry it carries as big-endian Unix seconds at
// body[expiresAt:]; a nonce that is empty, not sealed under k, or expired at
// now is a badNonce problem. One nonce has one spelling, since a shared nonce
// is redeemed by its text: the decoding is strict (the last character
// carries spare bits a lenient decoder ignores), and anything but the
// base64url alphabet is refused first (Go's decoder skips CR and LF even
// when strict).
func (k nonceKey) open(nonce string, bodyLen, expiresAt int, now time.Time) ([]byte, time.Time, error) {
	if nonce == "" {
		return nil, time.Time{}, acme.BadNonce("the protected header has no nonce")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || !isBase64URL(nonce) || len(b) != bodyLen+nonceMAC || !hmac.Equal(b[bodyLen:], k.mac(b[:bodyLen])) {
		return nil, time.Time{}, acme.BadNonce("%q is not a nonce this server issued (or it was issued before a restart)", truncate(nonce, 64))
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(b[expiresAt:expiresAt+8])), 0)
	if now.After(expires) {
		return nil, time.Time{}, acme.BadNonce("the nonce expired")
	}
	return b[:bodyLen], expires, nil
}

// isBase64URL says whether s holds only characters of the base64url
// alphabet.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
