package api

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/acme"
)

// badNonceDetail returns the detail of a badNonce problem, and fails the test
// for anything else.
func badNonceDetail(t *testing.T, err error) string {
	t.Helper()
	var p *acme.Problem
	if !errors.As(err, &p) || p.Type != acme.ProblemNS+"badNonce" {
		t.Fatalf("got %v, want a badNonce problem", err)
	}
	// acme.sh retries a refused nonce only when the detail has Boulder's words.
	if !strings.HasPrefix(p.Detail, "JWS has an invalid anti-replay nonce: ") {
		t.Errorf("badNonce detail %q does not begin with \"JWS has an invalid anti-replay nonce: \"", p.Detail)
	}
	return p.Detail
}

func TestLocalNonceRedeemedOnce(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	a, b := n.New(), n.New()
	if a == b {
		t.Fatal("two nonces are the same")
	}
	ctx := context.Background()
	if err := n.Redeem(ctx, b); err != nil {
		t.Fatalf("redeem the second nonce first: %v", err)
	}
	if err := n.Redeem(ctx, a); err != nil {
		t.Fatalf("redeem the first nonce: %v", err)
	}
	for _, x := range []string{a, b} {
		if d := badNonceDetail(t, n.Redeem(ctx, x)); !strings.Contains(d, "already used") {
			t.Errorf("replay of %s: %q, want 'already used'", x, d)
		}
	}
}

// The spare bits of the last base64url character may not make a second nonce.
func TestLocalNonceRedeemedOnceInAnySpelling(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	nonce := n.New()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, nonce[len(nonce)-1])
	if err := n.Redeem(context.Background(), nonce); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for spare := 1; spare < 4; spare++ {
		v := nonce[:len(nonce)-1] + string(alphabet[last^spare])
		if v == nonce {
			continue
		}
		badNonceDetail(t, n.Redeem(context.Background(), v))
	}
}

// A restarted server (a new LocalNonces) refuses the old one's nonces, since
// it does not know which of them were used.
func TestLocalNonceRefusedAfterRestart(t *testing.T) {
	before := NewLocalNonces(time.Minute)
	nonce := before.New()
	after := NewLocalNonces(time.Minute)
	after.New()
	if d := badNonceDetail(t, after.Redeem(context.Background(), nonce)); !strings.Contains(d, "not a nonce this server issued") {
		t.Errorf("nonce from before the restart: %q", d)
	}
}

func TestLocalNonceExpires(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	now := time.Now()
	n.now = func() time.Time { return now }
	nonce := n.New()
	now = now.Add(2 * time.Minute)
	if d := badNonceDetail(t, n.Redeem(context.Background(), nonce)); !strings.Contains(d, "expired") {
		t.Errorf("nonce past its lifetime: %q", d)
	}
}

// A nonce that has left the window is refused, while the newest one of the
// window, whose bit the stale nonce's shares, is still good.
func TestLocalNonceWindow(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	old := n.New()
	n.mu.Lock()
	n.next += localNonceWindow - 1 // as if that many nonces were issued since
	n.mu.Unlock()
	newest := n.New() // same bit as old
	if d := badNonceDetail(t, n.Redeem(context.Background(), old)); !strings.Contains(d, "too many nonces") {
		t.Errorf("stale nonce: %q", d)
	}
	if err := n.Redeem(context.Background(), newest); err != nil {
		t.Errorf("newest nonce, sharing the stale one's bit: %v", err)
	}
}

// Garbage, truncated and forged nonces are refused without a panic.
func TestLocalNonceRefusesForgeries(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	good := n.New()
	for _, bad := range []string{"", "x", "!!!!", good[:len(good)-2], good + "AA", strings.Repeat("A", len(good))} {
		badNonceDetail(t, n.Redeem(context.Background(), bad))
	}
}

// Of many concurrent redemptions of one nonce, exactly one succeeds.
func TestLocalNonceConcurrentRedeem(t *testing.T) {
	n := NewLocalNonces(time.Minute)
	for range 50 {
		nonce := n.New()
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.New() // issuing meanwhile
				if n.Redeem(context.Background(), nonce) == nil {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("%d redemptions of one nonce succeeded, want 1", ok.Load())
		}
	}
}

func BenchmarkLocalNonces(b *testing.B) {
	n := NewLocalNonces(time.Minute)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := n.Redeem(ctx, n.New()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
