package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// base is the suite's "now": a fixed instant, already at microsecond
// precision, so that records compare equal after a round trip.
var base = time.Date(2031, time.March, 14, 15, 9, 26, 535897000, time.UTC)

// at returns base moved by d.
func at(d time.Duration) time.Time { return base.Add(d) }

const day = 24 * time.Hour

// must fails t if err is not nil.
func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantErr fails t unless errors.Is(err, target).
func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// same fails t unless got and want are deeply equal, showing both as JSON.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// race runs f(0) … f(n-1) in n goroutines released at once, and returns their
// errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors wrapping want, and fails t on any other
// error: a lost race must be reported as want, not as a database error.
func tally(t *testing.T, errs []error, want error) (ok, lost int) {
	t.Helper()
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			lost++
		default:
			t.Errorf("goroutine %d: unexpected error %v", i, err)
		}
	}
	return ok, lost
}

// revocationsOf is how many of the issuer's certificates are revoked, in all
// its CRL shards, and when the latest was: what a CRL publisher reads from
// RevocationsByShard.
func revocationsOf(ctx context.Context, s storage.Store, issuer string) (int, time.Time, error) {
	byShard, err := s.RevocationsByShard(ctx, issuer)
	var n int
	var latest time.Time
	for _, r := range byShard {
		n += r.Count
		if r.Latest.After(latest) {
			latest = r.Latest
		}
	}
	return n, latest, err
}
