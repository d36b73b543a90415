package sqlite

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func cacheTestAccount(id string) *storage.Account {
	return &storage.Account{ID: id, KeyID: "key-" + id, Key: []byte(`{"kty":"EC"}`), Contact: []string{"mailto:a@example.com"},
		Status: "valid", TermsAgreed: true, CreatedIP: "192.0.2.1", CreatedAt: time.Now()}
}

// A cached account shows every write at once: deactivation (which must stop
// the account's next request) and key rollover. What a caller does to the
// account it got back does not reach the cache.
func TestAccountCacheSeesWrites(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	a := cacheTestAccount("a")
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAccount(ctx, "a") // now cached
	if err != nil {
		t.Fatal(err)
	}
	got.Contact[0], got.Key[0], got.Status = "mailto:evil@example.com", 'X', "revoked"
	if again, _ := s.GetAccount(ctx, "a"); again.Contact[0] != "mailto:a@example.com" || again.Key[0] != '{' || again.Status != "valid" {
		t.Fatalf("a caller's change to its copy reached the cache: %+v", again)
	}

	deact := cacheTestAccount("a")
	deact.Status = "deactivated"
	if err := s.UpdateAccount(ctx, deact, "valid"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccount(ctx, "a"); got.Status != "deactivated" {
		t.Fatalf("after deactivation the account reads %q", got.Status)
	}

	b := cacheTestAccount("b")
	if err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	s.GetAccount(ctx, "b")
	if err := s.RolloverAccountKey(ctx, "b", "key-b", "key-b2", []byte(`{"new":1}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccount(ctx, "b"); got.KeyID != "key-b2" || string(got.Key) != `{"new":1}` {
		t.Fatalf("after rollover the account reads key %q %s", got.KeyID, got.Key)
	}
}

// Readers racing writers: once a write has returned, every later read sees
// it, however reads and writes interleaved before.
func TestAccountCacheUnderConcurrentWrites(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateAccount(ctx, cacheTestAccount("c")); err != nil {
		t.Fatal(err)
	}
	for round := range 50 {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
						s.GetAccount(ctx, "c")
					}
				}
			}()
		}
		u := cacheTestAccount("c")
		u.Contact = []string{fmt.Sprintf("mailto:round%d@example.com", round)}
		if err := s.UpdateAccount(ctx, u, "valid"); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAccount(ctx, "c")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got.Contact[0] != u.Contact[0] {
			t.Fatalf("round %d: read %q after writing %q", round, got.Contact[0], u.Contact[0])
		}
	}
}
