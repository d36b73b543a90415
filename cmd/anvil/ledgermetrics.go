package main

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anvil-pki/anvil/storage"
)

// ledgerCollector exports anvil_ledger_rows{issuer,outcome}: how many ledger
// rows each issuer has with each outcome ("open" for rows without one yet).
// A COUNT ... GROUP BY over an index, run at most every ledgerMetricsTTL
// however often Prometheus scrapes.
type ledgerCollector struct {
	store storage.Store
	desc  *prometheus.Desc

	mu      sync.Mutex
	at      time.Time
	counts  []storage.LedgerCount
	lastErr error
}

const ledgerMetricsTTL = 5 * time.Second

func newLedgerCollector(store storage.Store) *ledgerCollector {
	return &ledgerCollector{
		store: store,
		desc: prometheus.NewDesc("anvil_ledger_rows", "Issuance ledger rows per issuer and outcome (issued, not_signed, abandoned, open).",
			[]string{"issuer", "outcome"}, nil),
	}
}

func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > ledgerMetricsTTL {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		counts, err := c.store.LedgerCounts(ctx)
		cancel()
		c.at, c.lastErr = time.Now(), err
		if err == nil {
			c.counts = counts
		}
	}
	if c.lastErr != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, c.lastErr)
		return
	}
	sums := map[[2]string]int64{}
	for _, n := range c.counts {
		outcome := n.Outcome
		if outcome == "" {
			outcome = "open"
		}
		sums[[2]string{n.Issuer, outcome}] += n.Count
	}
	for k, v := range sums {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
}
