package api

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"github.com/anvil-pki/anvil/acme"
)

// LocalNonces issues and redeems nonces within one process, with no storage
// at all: the nonce service of a front end that is the only one, as on
// SQLite.
//
// A nonce is a sequence number, its expiry and a MAC over both under a key
// made when the process starts, so nonces from before a restart are refused
// (clients retry a badNonce with the fresh nonce that comes with it, RFC 8555
// 6.5). Which of the last localNonceWindow sequence numbers were redeemed is
// one bit each; a nonce older than that window is refused as stale. Memory is
// fixed (localNonceWindow/8 bytes), whatever the load, and redeeming costs a
// MAC and a bit flip instead of a database write.
//
// It must not serve several front ends: each would accept the others'
// nonces never, and its own once.
type LocalNonces struct {
	key      nonceKey
	lifetime time.Duration
	now      func() time.Time

	mu   sync.Mutex
	next uint64   // the sequence number the next nonce gets
	used []uint64 // bit s%localNonceWindow: sequence number s was redeemed
}

// localNonceWindow is how many of the latest nonces stay redeemable: 4M,
// about half an hour of nonces at 2,400 a second (8 per certificate at 300
// certificates a second), in 512 KiB.
const localNonceWindow = 1 << 22

// A local nonce's body: its sequence number, then its expiry.
const localNonceBodyLen = 8 + 8

// NewLocalNonces returns a nonce service for a single process; lifetime bounds
// how long an unused nonce stays good.
func NewLocalNonces(lifetime time.Duration) *LocalNonces {
	if lifetime <= 0 {
		lifetime = 30 * time.Minute
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &LocalNonces{key: key, lifetime: lifetime, now: time.Now, used: make([]uint64, localNonceWindow/64)}
}

// New returns a fresh nonce.
func (n *LocalNonces) New() string {
	n.mu.Lock()
	seq := n.next
	n.next++
	// The bit now stands for seq, no longer for seq-localNonceWindow, which
	// has left the window.
	n.used[seq/64%(localNonceWindow/64)] &^= 1 << (seq % 64)
	n.mu.Unlock()

	var b [localNonceBodyLen]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(n.now().Add(n.lifetime).Unix()))
	return n.key.seal(b[:])
}

// Redeem accepts a nonce once, or returns a badNonce problem.
func (n *LocalNonces) Redeem(_ context.Context, nonce string) error {
	b, _, err := n.key.open(nonce, localNonceBodyLen, 8, n.now())
	if err != nil {
		return err
	}
	seq := binary.BigEndian.Uint64(b[:8])
	word, bit := seq/64%(localNonceWindow/64), uint64(1)<<(seq%64)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case seq >= n.next:
		// A valid MAC on a number not issued yet: the key leaked, or a bug.
		return acme.BadNonce("%q is not a nonce this server issued (or it was issued before a restart)", truncate(nonce, 64))
	case n.next-seq > localNonceWindow:
		return acme.BadNonce("the nonce expired: too many nonces were issued after it")
	case n.used[word]&bit != 0:
		return acme.BadNonce("the nonce was already used")
	}
	n.used[word] |= bit
	return nil
}
