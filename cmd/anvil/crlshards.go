package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/issuance"
)

// validateCRLShards checks an issuer's crl_shards against its crl_url, from
// which each shard's URL is derived.
func (is issuerConfig) validateCRLShards(p *config.Problems, path string) {
	if is.CRLShards < 0 || is.CRLShards > issuance.MaxCRLShards {
		p.Addf(path+".crl_shards", "must be between 1 and %d (0 or absent: 1)", issuance.MaxCRLShards)
		return
	}
	if is.CRLShards <= 1 {
		return
	}
	if is.CRLURL == "" {
		p.Addf(path+".crl_shards", "needs crl_url: the URL of each shard is derived from it")
		return
	}
	u, err := url.Parse(is.CRLURL)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(u.Path, "/") {
		p.Addf(path+".crl_url", "%s", fmt.Sprintf("with crl_shards, must name a file (no query, fragment or trailing slash): %q", is.CRLURL))
	}
}
