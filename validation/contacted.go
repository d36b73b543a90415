package validation

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// Contacted collects the addresses a validation connected to (or tried to),
// in order, for the audit log. dns-01 contacts only the configured resolvers,
// so it adds nothing here.
type Contacted struct {
	mu    sync.Mutex
	addrs []string
}

type contactedKey struct{}

// WithContacted returns a context under which Validate adds every address it
// dials to c.
func WithContacted(ctx context.Context, c *Contacted) context.Context {
	return context.WithValue(ctx, contactedKey{}, c)
}

// Addresses returns the addresses dialed, as ip:port, each once.
func (c *Contacted) Addresses() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.addrs)
}

func noteContacted(ctx context.Context, ap netip.AddrPort) {
	c, _ := ctx.Value(contactedKey{}).(*Contacted)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := ap.String(); !slices.Contains(c.addrs, s) {
		c.addrs = append(c.addrs, s)
	}
}
