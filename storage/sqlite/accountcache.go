package sqlite

import (
	"slices"
	"sync"

	"github.com/anvil-pki/anvil/storage"
)

// accountCache keeps accounts read by ID. Every ACME request signed with a
// kid reads its account (six per certificate with lego); on SQLite this
// process is the only writer of accounts (`anvil admin account deactivate`
// refuses while a server holds the database's serve lock), so a cache that
// each account write of this Store empties stays exact.
//
// A read that missed may store what it read only if no account write began
// since the miss: gen counts writes, so a value read before a write can never
// land after that write's invalidation.
type accountCache struct {
	mu   sync.Mutex
	gen  uint64
	byID map[string]*storage.Account
}

// maxCachedAccounts bounds the cache; when full it starts over, which costs
// one read per active account.
const maxCachedAccounts = 10000

func newAccountCache() *accountCache {
	return &accountCache{byID: map[string]*storage.Account{}}
}

// get returns a copy of the cached account, or the generation a read from the
// database must present to put.
func (c *accountCache) get(id string) (*storage.Account, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.byID[id]; ok {
		return cloneAccount(a), c.gen
	}
	return nil, c.gen
}

// put stores a copy of a read from the database, unless an account write
// began since get returned gen.
func (c *accountCache) put(a *storage.Account, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.byID) >= maxCachedAccounts {
		clear(c.byID)
	}
	c.byID[a.ID] = cloneAccount(a)
}

// forget drops an account about to be written (and after, in case a read
// raced the write): called on both sides of every account write.
func (c *accountCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.byID, id)
}

// cloneAccount copies a so that no caller can change the cached value.
func cloneAccount(a *storage.Account) *storage.Account {
	b := *a
	b.Key = slices.Clone(a.Key)
	b.Contact = slices.Clone(a.Contact)
	return &b
}
