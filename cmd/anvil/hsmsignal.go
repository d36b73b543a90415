package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/anvil-pki/anvil/hsm"
)

// reloginOnSIGHUP makes SIGHUP the operator's word that a refused PIN is
// fixed: each token re-reads its PIN source and, if it refused the PIN, logs in
// once. Anvil never logs in again on its own after a refused PIN, because
// retrying locks a real HSM's user PIN. It returns the function that stops
// listening.
func reloginOnSIGHUP(tokens []*hsm.Token, logger *slog.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
			}
			logger.Info("SIGHUP: re-reading the PIN sources", "tokens", len(tokens))
			for _, t := range tokens {
				before := t.Health()
				if err := t.Relogin(); err != nil {
					logger.Error("SIGHUP: log in again", "token", t.Label(), "error", err.Error())
					continue
				}
				if before.State == hsm.HealthLoginRefused {
					logger.Info("SIGHUP: logged in again", "token", t.Label())
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
