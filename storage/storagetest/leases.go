package storagetest

import (
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func testTryLease(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const ttl = time.Minute
	for _, c := range []struct {
		what   string
		name   string
		holder string
		now    time.Time
		want   bool
	}{
		{"a free lease is taken", "crl", "node-a", at(0), true},
		{"held by another, unexpired", "crl", "node-b", at(30 * time.Second), false},
		{"renewed by its holder", "crl", "node-a", at(40 * time.Second), true},
		{"the renewal extended it", "crl", "node-b", at(90 * time.Second), false},
		{"ending exactly now is not yet expired", "crl", "node-b", at(100 * time.Second), false},
		{"expired, taken by another", "crl", "node-b", at(100*time.Second + time.Microsecond), true},
		{"the old holder lost it", "crl", "node-a", at(110 * time.Second), false},
		{"another lease is independent", "cleanup", "node-a", at(30 * time.Second), true},
		{"its holder may renew an expired lease", "cleanup", "node-a", at(time.Hour), true},
	} {
		got, err := s.TryLease(ctx, c.name, c.holder, c.now, ttl)
		must(t, err, c.what)
		if got != c.want {
			t.Fatalf("%s: TryLease(%s, %s, %s) = %v, want %v", c.what, c.name, c.holder, c.now, got, c.want)
		}
	}
}

// testLeaseRace: nodes starting together agree on one holder.
func testLeaseRace(t *testing.T, s storage.Store) {
	won := make([]bool, 20)
	errs := race(20, func(i int) error {
		var err error
		won[i], err = s.TryLease(t.Context(), "crl", name("node", i), base, time.Minute)
		return err
	})
	n := 0
	for i, err := range errs {
		must(t, err, "TryLease")
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d of 20 nodes took one lease, want 1", n)
	}
}
