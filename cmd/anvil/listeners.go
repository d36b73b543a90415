package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// listeners are the HTTP servers of a daemon, `anvil serve` or `anvil
// signer`: opened one by one before anything is served, run each on its own
// goroutine, and shut down together. Both commands open their listeners
// here, so that a listener of the same kind gets the same timeouts in both.
type listeners struct {
	log     *slog.Logger
	servers []*http.Server
	errc    chan error // the first listener that stops on its own
}

// shutdownGrace is how long requests in flight get to finish at shutdown.
const shutdownGrace = 10 * time.Second

func newListeners(log *slog.Logger) *listeners {
	return &listeners{log: log, errc: make(chan error, 1)}
}

// listen opens addr and serves srv on it, over TLS when srv has a TLSConfig.
// key is the configuration field of addr, named in the error.
func (l *listeners) listen(key, addr string, srv *http.Server) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if srv.ErrorLog == nil {
		srv.ErrorLog = slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)
	}
	l.servers = append(l.servers, srv)
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		select {
		case l.errc <- err:
		default: // another listener stopped first: that one is reported
		}
	}()
	return ln.Addr(), nil
}

// wait returns when ctx ends (nil) or a listener fails (its error).
func (l *listeners) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-l.errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// shutdown stops every listener, letting requests in flight finish for up
// to shutdownGrace. It is safe to call more than once.
func (l *listeners) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range l.servers {
		srv.Shutdown(ctx)
	}
	l.servers = nil
}

// adminServer serves /health, /metrics and pprof: a private listener, so no
// write timeout (a CPU profile takes 30 s to write).
func adminServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}

// pkiServer serves CRLs, OCSP and CA certificates to anyone: small requests
// and answers, so short timeouts bound what a slow client can hold.
func pkiServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
}

// openShared opens the listeners every daemon of a CA has: the admin
// listener (when addr is set; extra, when set, serves the paths the admin
// handler does not) and, when this process publishes, the PKI listener.
func (c *core) openShared(l *listeners, adminAddr string, extra http.Handler) error {
	if adminAddr != "" {
		if _, err := l.listen("admin_listen", adminAddr, adminServer(c.adminHandler(extra))); err != nil {
			return err
		}
	}
	if c.cfg.PKI.Listen != "" && c.publisher != nil {
		ocspPath := c.cfg.PKI.OCSPPath
		if ocspPath == "" {
			ocspPath = "/ocsp"
		}
		if _, err := l.listen("pki.listen", c.cfg.PKI.Listen, pkiServer(pkiHandler(c.publisher, ocspPath, c.metrics))); err != nil {
			return err
		}
	}
	return nil
}

// runDuties starts the background work of a process that issues: CRL
// publication and the ledger's node lease and sweeps. They stop with ctx.
func (c *core) runDuties(ctx context.Context) {
	if c.publisher != nil {
		go c.publisher.Run(ctx)
	}
	if c.svc != nil {
		go c.ledgerDuty(ctx)
	}
}
