package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/signer"
)

func init() {
	register("signer", "run the issuance service on its own, behind mutual TLS", runSigner)
}

// signerConfig is the YAML file of `anvil signer`: the issuance service beside
// the HSM, for front ends that run `anvil serve` with a signer section.
type signerConfig struct {
	// Listen is the mTLS listener front ends call.
	Listen string          `yaml:"listen"`
	TLS    signerTLSConfig `yaml:"tls"`
	// AllowedClients are the front ends' certificate identities (common name,
	// DNS or URI name) the signer serves.
	AllowedClients []string `yaml:"allowed_clients"`
	// AdminListen serves /metrics and /health (plain HTTP; keep it private).
	AdminListen string `yaml:"admin_listen"`
	caConfig    `yaml:",inline"`
	Log         logConfig `yaml:"log"`
}

type signerTLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"` // the CA that issued the front ends' client certificates
}

// Validate checks the file; every problem names its YAML path.
func (c *signerConfig) Validate() error {
	var p config.Problems
	p.Require("listen", c.Listen)
	p.Require("tls.cert", c.TLS.Cert)
	p.Require("tls.key", c.TLS.Key)
	p.Require("tls.client_ca", c.TLS.ClientCA)
	if len(c.AllowedClients) == 0 {
		p.Addf("allowed_clients", "name at least one front end")
	}
	c.validateShared(&p)
	c.validateIssuance(&p)
	c.Log.validate(&p)
	return p.Err()
}

func runSigner(args []string) error {
	var cfg signerConfig
	ctx, stop, err := startDaemon("signer", args, &cfg)
	if err != nil {
		return err
	}
	defer stop()
	logger := installLogger(cfg.Log)

	cfg.caConfig.listen = cfg.Listen
	c, err := openCore(ctx, &cfg.caConfig, logger, true)
	if err != nil {
		return err
	}
	defer c.close()
	defer reloginOnSIGHUP(c.tokens, logger)()
	if err := c.recoverNode(ctx, true); err != nil {
		return err
	}
	srv, err := signer.NewServer(signer.ServerConfig{Service: c.svc, Store: c.store, AllowedClients: cfg.AllowedClients, Logger: logger})
	if err != nil {
		return err
	}
	tlsCfg, err := signer.ServerTLS(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	l := newListeners(logger)
	defer l.shutdown()
	addr, err := l.listen("listen", cfg.Listen, &http.Server{Handler: srv.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute})
	if err != nil {
		return err
	}
	// The signer has the HSM and the ledger: it publishes CRLs and answers OCSP.
	if err := c.openShared(l, cfg.AdminListen, nil); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.runDuties(bg)
	logger.Info("anvil signer serving", "listen", addr.String(), "clients", cfg.AllowedClients, "pki", cfg.PKI.Listen)
	if err := l.wait(ctx); err != nil {
		return err
	}
	logger.Info("shutting down")
	l.shutdown()
	return nil
}
