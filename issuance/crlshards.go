package issuance

import (
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"
)

// MaxCRLShards bounds the CRL shards of an issuer: each is one HSM signature
// per regeneration and one URL in every relying party's list.
const MaxCRLShards = 128

// Partitioned CRLs (RFC 5280 5.2.5). An issuer with N shards puts each
// certificate in shard serial mod N, chosen when the serial is reserved and
// stored in the ledger row: the shard's URL is in the certificate, so the
// shard never changes, even when the operator changes N later. The serial is
// random, so shards fill evenly.
//
// Shard 0 is published at crl_url itself, so that the certificates issued
// before sharding was turned on (all in shard 0) keep a current CRL at the
// URL they carry, and shards = 1 is exactly the unsharded issuer. Shard k > 0
// is at crl_url without its ".crl", then "/k.crl":
//
//	crl_url  http://pki.example.com/int-ecdsa.crl   shard 0
//	         http://pki.example.com/int-ecdsa/1.crl  shard 1
//	         http://pki.example.com/int-ecdsa/crls.json  the list (CCADB's
//	         "JSON Array of Partitioned CRLs")

// checkShards checks the shard count against the CRL URL.
func (u URLs) checkShards() error {
	if u.CRLShards < 0 || u.CRLShards > MaxCRLShards {
		return fmt.Errorf("crl_shards %d must be between 1 and %d", u.CRLShards, MaxCRLShards)
	}
	if u.CRLShards > 1 && u.CRLURL == "" {
		return errors.New("crl_shards needs a crl_url: each shard's URL is derived from it")
	}
	if u.CRLURL != "" {
		pu, err := url.Parse(u.CRLURL)
		if err != nil {
			return fmt.Errorf("crl_url: %w", err)
		}
		if pu.RawQuery != "" || pu.Fragment != "" || strings.HasSuffix(pu.Path, "/") {
			return fmt.Errorf("crl_url %q: the URLs of the shards and of their list are derived from it, so it must name a file, without a query or fragment", u.CRLURL)
		}
	}
	return nil
}

// Shards is the number of CRL shards new certificates are spread over (at
// least 1).
func (u URLs) Shards() int { return max(u.CRLShards, 1) }

// CRLShardURL is the URL of one shard's CRL: the certificates of the shard
// carry it as their CRL distribution point, and the shard's CRL names it in
// its issuing distribution point. "" when the issuer has no CRL URL.
func (u URLs) CRLShardURL(shard int) string {
	if u.CRLURL == "" || shard == 0 {
		return u.CRLURL
	}
	return u.crlBase() + "/" + strconv.Itoa(shard) + ".crl"
}

// CRLListURL is where the JSON array of the issuer's CRL URLs is published;
// "" when the issuer has no CRL URL.
func (u URLs) CRLListURL() string {
	if u.CRLURL == "" {
		return ""
	}
	return u.crlBase() + "/crls.json"
}

func (u URLs) crlBase() string { return strings.TrimSuffix(u.CRLURL, ".crl") }

// crlShardOf is the shard of a new certificate with this serial.
func (u URLs) crlShardOf(serial *big.Int) int {
	n := u.Shards()
	if n == 1 {
		return 0
	}
	return int(new(big.Int).Mod(serial, big.NewInt(int64(n))).Int64())
}
