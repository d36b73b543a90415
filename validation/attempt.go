package validation

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// attempt is the state of one validation attempt: the one resolution of each
// name it connects to. Within an attempt a name is resolved once, and every
// connection to it — the first request and any redirect back to it — goes to
// an address of that resolution that passed the address filter. A DNS answer
// that changes in between (rebinding) is never asked for, so it cannot steer
// a later hop to an address the first answer did not give. An attempt is
// made by Validate and dropped when it returns: nothing is cached across
// validations.
type attempt struct {
	v     *Validator
	mu    sync.Mutex
	names map[string]*resolution
}

// resolution is the outcome of resolving one name once: the addresses to try
// (as usableAddrs picked them, every one allowed) or why there are none.
type resolution struct {
	addrs []netip.Addr
	prob  *Problem
}

func (v *Validator) newAttempt() *attempt {
	return &attempt{v: v, names: map[string]*resolution{}}
}

// addrsOf resolves name the first time it is asked in this attempt, and gives
// the same answer (or the same problem) every later time.
func (a *attempt) addrsOf(ctx context.Context, name string) ([]netip.Addr, *Problem) {
	key := strings.ToLower(strings.TrimSuffix(name, "."))
	a.mu.Lock()
	defer a.mu.Unlock() // one lookup at a time: an attempt is sequential anyway
	if r, ok := a.names[key]; ok {
		return r.addrs, r.prob
	}
	r := &resolution{}
	var all []netip.Addr
	if all, r.prob = a.v.resolver.lookupAddrs(ctx, key); r.prob == nil {
		r.addrs, r.prob = a.v.usableAddrs(key, all)
	}
	a.names[key] = r
	return r.addrs, r.prob
}

// dial connects to host (a DNS name, or the IP literal ip when valid) on
// port, through this attempt's resolution of the name: it never resolves on
// its own, and connect refuses any address the policy refuses. A failure to
// resolve is returned as a *Problem; a failure to connect as a connectError
// the caller words for its challenge.
func (a *attempt) dial(ctx context.Context, host string, ip netip.Addr, port int) (net.Conn, netip.AddrPort, *Problem, *connectError) {
	addrs := []netip.Addr{ip.Unmap()}
	if !ip.IsValid() {
		var prob *Problem
		if addrs, prob = a.addrsOf(ctx, host); prob != nil {
			return nil, netip.AddrPort{}, prob, nil
		}
	}
	conn, ap, ce := a.v.connect(ctx, addrs, port)
	if ce != nil {
		return nil, netip.AddrPort{}, nil, ce
	}
	return conn, ap, nil, nil
}
