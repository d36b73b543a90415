package revocation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
)

// An operator's CRL request (`anvil admin crl regenerate`) is a row in the
// database: the publisher makes a new CRL at its next check even though
// nothing was revoked, and only one.
func TestCRLRequest(t *testing.T) {
	var mu sync.Mutex
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := newEnvConfig(t, 1, func(c *revocation.Config) { c.Now = clock })
	ctx := context.Background()
	e.pub.RefreshNow(ctx)
	first, err := e.store.GetCRLShard(ctx, e.iss.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	advance(10 * time.Second)
	e.pub.RefreshNow(ctx)
	if made := e.pub.Metrics().CRLsPublished.Load(); made != 1 {
		t.Fatalf("%d CRLs made with nothing new and no request, want 1", made)
	}

	if err := e.store.(storage.Admin).RequestCRL(ctx, e.iss.Name(), clock()); err != nil {
		t.Fatal(err)
	}
	advance(10 * time.Second)
	e.pub.RefreshNow(ctx)
	second, err := e.store.GetCRLShard(ctx, e.iss.Name(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.Number <= first.Number || !second.ThisUpdate.Equal(clock()) {
		t.Fatalf("after a request: CRL number %d thisUpdate %s, want a number above %d made at %s", second.Number, second.ThisUpdate, first.Number, clock())
	}
	advance(10 * time.Second)
	e.pub.RefreshNow(ctx)
	if made := e.pub.Metrics().CRLsPublished.Load(); made != 2 {
		t.Fatalf("%d CRLs made, want 2: a request is served once", made)
	}
}
