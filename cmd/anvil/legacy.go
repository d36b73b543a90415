package main

import (
	"log/slog"
	"net/http"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
	"github.com/anvil-pki/anvil/api/legacy"
)

// legacyConfig switches on the ACME v1 front end (draft-barnes-acme as
// Boulder served it) at <base_url>/acme/v1/directory, on the same core as
// the RFC 8555 API:
//
//	legacy:
//	  enabled: true
type legacyConfig struct {
	Enabled bool `yaml:"enabled"`
	// SimpleHTTPS also offers the seed's simpleHttps challenge to v1 clients.
	// It binds no account key, so it is off unless asked for.
	SimpleHTTPS bool `yaml:"simple_https"`
}

// withLegacy mounts the v1 front end beside the RFC 8555 one when the
// configuration enables it, sharing its core and its nonces.
func withLegacy(cfg *serveConfig, ca *acme.Core, nonces api.NonceSource, next http.Handler, logger *slog.Logger) (http.Handler, error) {
	if !cfg.Legacy.Enabled {
		return next, nil
	}
	v1, err := legacy.New(legacy.Config{
		BaseURL:      cfg.BaseURL,
		Core:         ca,
		Nonces:       nonces,
		MaxBodyBytes: cfg.ACME.MaxBodyBytes,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("ACME v1 front end enabled", "directory", cfg.BaseURL+legacy.DirectoryPath)
	return legacy.Mount(v1, next), nil
}
