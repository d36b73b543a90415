package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
)

// TestShardedCRLsSeenByOpenSSL: an operator turns on crl_shards: 4 for the
// ECDSA issuer of a running CA. The certificate issued before keeps its CRL at
// crl_url; new certificates name their shard's CRL; a revoked certificate is
// listed, as openssl reads it, in the CRL at its own distribution point, whose
// issuing distribution point names that URL, and in no other shard's CRL;
// crls.json lists the four CRL URLs.
func TestShardedCRLsSeenByOpenSSL(t *testing.T) {
	ca := NewCA(t)
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)
	obtain := func(name string) (*x509.Certificate, *x509.Certificate) {
		t.Helper()
		res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		chain := readChain(t, res.Certificate)
		return chain[0], chain[1]
	}
	base := fmt.Sprintf("http://localhost:%d/pki/int-ecdsa", ca.PKIPort)
	before, _ := obtain("before.anvil-e2e.com")
	if !slices.Equal(before.CRLDistributionPoints, []string{base + ".crl"}) {
		t.Fatalf("unsharded certificate's CRL DP %q", before.CRLDistributionPoints)
	}

	ca.Stop()
	cfg, err := os.ReadFile(ca.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	line := "    crl_url: " + base + ".crl\n"
	if !strings.Contains(string(cfg), line) {
		t.Fatalf("serve.yaml has no line %q", line)
	}
	if err := os.WriteFile(ca.cfgPath, []byte(strings.Replace(string(cfg), line, line+"    crl_shards: 4\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ca.Start()

	shardURLs := []string{base + ".crl", base + "/1.crl", base + "/2.crl", base + "/3.crl"}
	var leaves []*x509.Certificate
	var issuer *x509.Certificate
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		leaf, iss := obtain(fmt.Sprintf("shard%d.anvil-e2e.com", i))
		if len(leaf.CRLDistributionPoints) != 1 || !slices.Contains(shardURLs, leaf.CRLDistributionPoints[0]) {
			t.Fatalf("certificate %d: CRL DP %q, want one of %q", i, leaf.CRLDistributionPoints, shardURLs)
		}
		seen[leaf.CRLDistributionPoints[0]] = true
		leaves, issuer = append(leaves, leaf), iss
	}
	if len(seen) < 2 {
		t.Fatalf("8 certificates all name %v", seen)
	}
	revoked := leaves[0]
	reason := uint(1)
	if err := client.Certificate.RevokeWithReason(context.Background(), pemCert(revoked), &reason); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := client.Certificate.RevokeWithReason(context.Background(), pemCert(before), &reason); err != nil {
		t.Fatalf("revoke the certificate from before: %v", err)
	}

	dir := t.TempDir()
	cafile := filepath.Join(dir, "cafile.pem")
	os.WriteFile(cafile, append(mustRead(t, ca.RootPEM), mustRead(t, writePEM(t, filepath.Join(dir, "issuer.pem"), issuer))...), 0o644)
	// crlText fetches the CRL at url and returns openssl's reading of it,
	// verified against the issuer.
	crlText := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		path := filepath.Join(dir, "shard.crl")
		os.WriteFile(path, body, 0o644)
		text := opensslCmd(t, "crl", "-inform", "DER", "-in", path, "-CAfile", cafile, "-verify", "-noout", "-text")
		if !strings.Contains(text, "verify OK") {
			t.Fatalf("CRL at %s does not verify:\n%s", url, text)
		}
		return text
	}
	hexOf := func(c *x509.Certificate) string { return strings.ToUpper(c.SerialNumber.Text(16)) }
	// The publisher checks every 2 s here.
	deadline := time.Now().Add(60 * time.Second)
	for {
		text := crlText(revoked.CRLDistributionPoints[0])
		if strings.Contains(text, hexOf(revoked)) && strings.Contains(crlText(before.CRLDistributionPoints[0]), hexOf(before)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shard CRLs did not list the revoked serials within 60 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, url := range shardURLs {
		text := crlText(url)
		if text == "" {
			t.Fatalf("no CRL at %s", url)
		}
		if !strings.Contains(text, "X509v3 Issuing Distribution Point: critical") || !regexp.MustCompile(`URI:`+regexp.QuoteMeta(url)+`\s`).MatchString(text) || !strings.Contains(text, "Only User Certificates") {
			t.Fatalf("CRL at %s: issuing distribution point does not name it:\n%s", url, text)
		}
		for _, c := range []*x509.Certificate{revoked, before} {
			if listed := strings.Contains(text, hexOf(c)); listed != (url == c.CRLDistributionPoints[0]) {
				t.Fatalf("serial %s of %s: listed in %s = %v", hexOf(c), c.CRLDistributionPoints[0], url, listed)
			}
		}
	}

	resp, err := http.Get(base + "/crls.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []string
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("crls.json: %s %v", resp.Header.Get("Content-Type"), err)
	}
	if !slices.Equal(list, shardURLs) {
		t.Fatalf("crls.json lists %q, want %q", list, shardURLs)
	}

	// An operator's alerts and dashboard see every shard: a stale shard 3
	// must page as a stale shard 0 does.
	m := ca.scrapeMetrics(t)
	for i, url := range shardURLs {
		shard := labels{"issuer": "int-ecdsa", "source": "store", "shard": fmt.Sprint(i)}
		m.each(t, "anvil_crl_next_update_seconds", shard, "> 0", func(v float64) bool { return v > 0 })
		m.each(t, "anvil_crl_size_bytes", shard, "> 0", func(v float64) bool { return v > 0 })
		want := 0.0
		for _, c := range []*x509.Certificate{revoked, before} {
			if c.CRLDistributionPoints[0] == url {
				want++
			}
		}
		m.each(t, "anvil_crl_entries", shard, fmt.Sprint(want), func(v float64) bool { return v == want })
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
