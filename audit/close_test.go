package audit_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/audit"
)

// Close may be called from two places at once (a signal handler and a
// deferred close): the log closes once, with one shutdown checkpoint, and
// neither call panics.
func TestCloseTwiceAtOnce(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, err := audit.Open(audit.Config{Path: filepath.Join(t.TempDir(), "a.jsonl"), Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
