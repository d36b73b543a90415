package api

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// memNonces is a NonceStore in memory, with the unique constraint of the real
// ones.
type memNonces struct {
	mu   sync.Mutex
	used map[string]bool
}

func (m *memNonces) RedeemNonce(_ context.Context, nonce string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used[nonce] {
		return storage.ErrConflict
	}
	m.used[nonce] = true
	return nil
}

// A nonce is good once, whichever way it is spelled: the spare bits of its
// last base64url character may not make a second nonce of it.
func TestNonceRedeemedOnceInAnySpelling(t *testing.T) {
	n, err := NewNonces([]byte(strings.Repeat("k", 32)), time.Minute, &memNonces{used: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	nonce := n.New()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, nonce[len(nonce)-1])
	var variants []string
	for spare := 1; spare < 4; spare++ {
		variants = append(variants, nonce[:len(nonce)-1]+string(alphabet[last^spare]))
	}
	// Line breaks, which Go's decoder skips even when strict.
	variants = append(variants, nonce[:10]+"\r\n"+nonce[10:], nonce+"\n", "\r"+nonce)
	if err := n.Redeem(context.Background(), nonce); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for _, v := range append(variants, nonce) {
		if err := n.Redeem(context.Background(), v); err == nil {
			t.Errorf("nonce %s (a spelling of %s) accepted after the nonce was used", v, nonce)
		}
	}
}
