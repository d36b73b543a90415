package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// The ledger's owners. Every ledger row names the node that wrote its intent
// (its holder); a node holds the lease nodeLeasePrefix+node_id while it runs.
// An intent whose holder's lease ran out was left by a dead process: a
// signature may exist, so it is closed as abandoned and published as revoked.
const (
	nodeLeasePrefix = "node/"
	// nodeLeaseTTL is how long a node's lease outlives its last renewal:
	// long enough to ride over a slow database, short enough that a dead
	// node's intents are closed within a minute.
	nodeLeaseTTL = 30 * time.Second
	// ledgerDutyEvery is how often the node lease is renewed and, on
	// PostgreSQL, dead nodes' intents are swept.
	ledgerDutyEvery = 10 * time.Second
)

// nodeID names this process in the ledger and its leases: node_id when
// configured, else the host name and the listen address, which stay the same
// across restarts, so that a node that comes back takes its own work back.
func (c *caConfig) nodeID() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if c.listen == "" {
		return host
	}
	return host + "/" + c.listen
}

// recoverAlone runs at the start of a process that owns its SQLite database
// alone (it holds the serve lock): whatever its dead predecessor left is its
// own. Every intent without an outcome is abandoned (and so revoked), and
// every lease is released at once, so interrupted validations and finalizes
// resume within a second instead of waiting for their leases to run out.
func (c *core) recoverAlone(ctx context.Context) error {
	now := time.Now()
	abandoned, err := c.store.AbandonIntents(ctx, "", now)
	if err != nil {
		return fmt.Errorf("recover the ledger: %w", err)
	}
	freed, err := c.store.ReleaseAllLeases(ctx)
	if err != nil {
		return fmt.Errorf("recover leases: %w", err)
	}
	c.auditAbandoned(ctx, abandoned, "the previous process on this database")
	if abandoned > 0 || freed > 0 {
		c.log.Warn("recovered what the previous process left", "abandoned_intents", abandoned,
			"resumed_orders_and_challenges", freed, "why", "an intent without an outcome may have been signed: its serial is published as revoked (cessationOfOperation)")
	}
	return c.takeNodeLease(ctx, now)
}

// recoverNode runs at the start of a node sharing its database (PostgreSQL).
// It takes its node lease back at once (the lease is held by its own
// identity), releases the leases its previous life held on orders and
// challenges, so that that work resumes now rather than when the leases run
// out, and (with ledger set, when it issues) abandons the intents its
// previous life left open. All of it rests on no other live process using
// its identity, which node_id must guarantee.
func (c *core) recoverNode(ctx context.Context, ledger bool) error {
	now := time.Now()
	if err := c.takeNodeLease(ctx, now); err != nil {
		return err
	}
	freed, err := c.store.ReleaseLeasesOf(ctx, c.cfg.nodeID())
	if err != nil {
		return fmt.Errorf("recover leases: %w", err)
	}
	if freed > 0 {
		c.log.Warn("took back the work this node's previous process held", "node", c.cfg.nodeID(), "resumed_orders_and_challenges", freed)
	}
	if !ledger {
		return nil
	}
	abandoned, err := c.store.AbandonIntents(ctx, c.cfg.nodeID(), now)
	if err != nil {
		return fmt.Errorf("recover the ledger: %w", err)
	}
	c.auditAbandoned(ctx, abandoned, "this node's previous process")
	if abandoned > 0 {
		c.log.Warn("abandoned the intents this node's previous process left", "node", c.cfg.nodeID(), "abandoned_intents", abandoned)
	}
	return nil
}

func (c *core) takeNodeLease(ctx context.Context, now time.Time) error {
	id := c.cfg.nodeID()
	ok, err := c.store.TryLease(ctx, nodeLeasePrefix+id, id, now, nodeLeaseTTL)
	if err != nil {
		return fmt.Errorf("node lease: %w", err)
	}
	if !ok {
		return fmt.Errorf("node_id: the lease of node %q is held by another process", id)
	}
	return nil
}

// ledgerDuty keeps this node's lease while it runs and, on PostgreSQL, sweeps
// the intents of nodes whose lease ran out, on one node at a time.
func (c *core) ledgerDuty(ctx context.Context) {
	id := c.cfg.nodeID()
	tick := time.NewTicker(ledgerDutyEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// A clean stop: this node's intents all have outcomes now.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			c.store.ReleaseLease(rctx, nodeLeasePrefix+id, id)
			cancel()
			return
		case now := <-tick.C:
			c.ledgerTick(ctx, now)
		}
	}
}

// ledgerTick is one round of ledgerDuty.
func (c *core) ledgerTick(ctx context.Context, now time.Time) {
	id := c.cfg.nodeID()
	if _, err := c.store.TryLease(ctx, nodeLeasePrefix+id, id, now, nodeLeaseTTL); err != nil {
		c.log.Error("node lease not renewed; other nodes may abandon this node's intents", "node", id, "error", err)
	}
	if c.cfg.Database.Driver != "postgres" {
		return
	}
	if ok, err := c.store.TryLease(ctx, "ledger-sweep", id, now, nodeLeaseTTL); err != nil || !ok {
		return
	}
	n, err := c.store.AbandonOrphanedIntents(ctx, nodeLeasePrefix, now)
	if err != nil {
		c.log.Error("ledger sweep", "error", err)
		return
	}
	c.auditAbandoned(ctx, n, "nodes whose lease ran out")
	if n > 0 {
		c.log.Warn("abandoned the intents of nodes whose lease ran out", "abandoned_intents", n,
			"why", "a signature may exist: the serials are published as revoked (cessationOfOperation)")
	}
}

// recoverAtStart recovers what a dead predecessor left, before this server
// takes requests. With a remote signer the signer owns the ledger and
// recovers it itself; a front end on PostgreSQL still takes back its own
// leases on orders and challenges.
func (s *server) recoverAtStart(ctx context.Context) error {
	if s.cfg.Database.Driver == "sqlite" {
		if s.svc == nil {
			return nil
		}
		return s.recoverAlone(ctx)
	}
	return s.recoverNode(ctx, s.svc != nil)
}
