package main

import (
	"context"
	"sync"
	"time"
)

// healthEvery is how long one /health result is reused: each check test-signs
// with every HSM key, and the admin listener answers whoever can reach it, so
// however often /health is asked the HSM signs for it at most this often. A
// variable for tests only.
var healthEvery = 5 * time.Second

// healthCheck runs check at most once per every and hands the last result to
// the callers in between; callers that arrive during a check wait for it.
type healthCheck struct {
	every time.Duration
	check func(context.Context) error

	mu  sync.Mutex
	at  time.Time // when the last check ended; zero before the first
	err error
}

func (h *healthCheck) result(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < h.every {
		return h.err
	}
	// The result serves the callers after this one too: the first one hanging
	// up must not be recorded as the HSM failing. The token's own deadline
	// bounds each signature; this bounds the whole check.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	h.err, h.at = h.check(cctx), time.Now()
	return h.err
}
