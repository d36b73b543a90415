package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// shardEnv is an issuer on SoftHSM2 whose CRL URLs point at a live test
// server, so that each certificate's CRL distribution point is fetched as a
// relying party would.
type shardEnv struct {
	srv     *httptest.Server
	handler http.Handler
	store   storage.Store
	key     *hsm.Key
	cert    *x509.Certificate
	iss     *issuance.Issuer
	pub     *revocation.Publisher
	certs   []*x509.Certificate
}

func newShardEnv(t *testing.T, shards int) *shardEnv {
	t.Helper()
	e := &shardEnv{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.handler.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	tok, root := issuancetest.Token(t), issuancetest.NewRoot(t)
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "sharded", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	e.key, e.cert = key, root.Intermediate(t, "Anvil Sharded Test Issuer", key.Public())
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	e.setShards(t, shards)
	return e
}

// setShards (re)builds the issuer and its publisher with a shard count, on
// the same key, certificate and database: what an operator's restart with a
// new crl_shards does.
func (e *shardEnv) setShards(t *testing.T, shards int) {
	t.Helper()
	var err error
	e.iss, err = issuance.NewIssuer(context.Background(), "int", e.cert, e.key, issuance.URLs{
		IssuerURL: e.srv.URL + "/pki/int.der", OCSPURL: e.srv.URL + "/ocsp",
		CRLURL: e.srv.URL + "/pki/int.crl", CRLShards: shards,
	})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := e.iss.NewOCSPSigner(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.pub, err = revocation.New(context.Background(), revocation.Config{Logger: quiet, CRLCheckInterval: time.Hour}, e.store, []*issuance.OCSPSigner{signer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.handler = e.pub.Handler("/ocsp")
}

func (e *shardEnv) issue(t *testing.T, n int) []*x509.Certificate {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{e.iss},
		Profiles: []*issuance.Profile{issuancetest.Profile(t, "tls", issuance.ProfileConfig{})},
		Ledger:   ledger.Issuance{Store: e.store}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var out []*x509.Certificate
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d-%d.example.com", len(e.certs), i)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
		got, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{name}, Requester: "test"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got.Cert)
	}
	e.certs = append(e.certs, out...)
	return out
}

func (e *shardEnv) shardURL(k int) string {
	if k == 0 {
		return e.srv.URL + "/pki/int.crl"
	}
	return fmt.Sprintf("%s/pki/int/%d.crl", e.srv.URL, k)
}

// fetchCRL gets a CRL as a relying party does: by the URL, then checks the
// issuer's signature and that its issuing distribution point names exactly
// that URL, critical, for subscriber certificates only.
func (e *shardEnv) fetchCRL(t *testing.T, url string) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %s %s %q", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatalf("CRL at %s: %v", url, err)
	}
	if err := crl.CheckSignatureFrom(e.cert); err != nil {
		t.Fatalf("CRL at %s: signature: %v", url, err)
	}
	var found bool
	for _, ext := range crl.Extensions {
		if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) {
			continue
		}
		found = true
		dp, userOnly := parseIDP(t, ext.Value)
		if !ext.Critical || dp != url || !userOnly {
			t.Fatalf("CRL at %s: issuing distribution point critical=%v fullName=%q onlyContainsUserCerts=%v", url, ext.Critical, dp, userOnly)
		}
	}
	if !found {
		t.Fatalf("CRL at %s has no issuing distribution point", url)
	}
	return crl
}

// parseIDP reads the one URI of an IssuingDistributionPoint's fullName and
// its onlyContainsUserCerts (RFC 5280 5.2.5), refusing anything else.
func parseIDP(t *testing.T, der []byte) (uri string, userOnly bool) {
	t.Helper()
	in := cryptobyte.String(der)
	var seq, dpn, full cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&dpn, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!dpn.ReadASN1(&full, cbasn1.Tag(0).ContextSpecific().Constructed()) || !dpn.Empty() {
		t.Fatalf("issuing distribution point %x: no distributionPoint fullName", der)
	}
	var name cryptobyte.String
	if !full.ReadASN1(&name, cbasn1.Tag(6).ContextSpecific()) || !full.Empty() {
		t.Fatalf("issuing distribution point %x: fullName is not one URI", der)
	}
	var flag cryptobyte.String
	if seq.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) {
		if !seq.ReadASN1(&flag, cbasn1.Tag(1).ContextSpecific()) || len(flag) != 1 {
			t.Fatalf("issuing distribution point %x: bad onlyContainsUserCerts", der)
		}
		userOnly = flag[0] == 0xff
	}
	if !seq.Empty() {
		t.Fatalf("issuing distribution point %x: more than distributionPoint and onlyContainsUserCerts", der)
	}
	return string(name), userOnly
}

func (e *shardEnv) crlList(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get(e.srv.URL + "/pki/int/crls.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var urls []string
	if err := json.NewDecoder(resp.Body).Decode(&urls); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("CRL list: %s %q: %v", resp.Status, resp.Header.Get("Content-Type"), err)
	}
	return urls
}

func serialsOf(crl *x509.RevocationList) []string {
	var out []string
	for _, rc := range crl.RevokedCertificateEntries {
		out = append(out, fmt.Sprintf("%x", rc.SerialNumber))
	}
	slices.Sort(out)
	return out
}

// TestShardedCRLs: with crl_shards 4 each certificate names its shard's CRL,
// that CRL is served at that URL, signed by the issuer, with an issuing
// distribution point of exactly that URL, and lists the certificate once
// revoked; no other shard's CRL does. The JSON list names the four URLs.
func TestShardedCRLs(t *testing.T) {
	e := newShardEnv(t, 4)
	ctx := context.Background()
	certs := e.issue(t, 40)
	shardOf := map[string]int{}
	byShard := map[int][]*x509.Certificate{}
	for _, c := range certs {
		serial := fmt.Sprintf("%x", c.SerialNumber)
		row, err := e.store.GetCertificate(ctx, serial)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.CRLDistributionPoints) != 1 || c.CRLDistributionPoints[0] != e.shardURL(row.CRLShard) {
			t.Fatalf("certificate %s in shard %d has CRL distribution points %q, want %q", serial, row.CRLShard, c.CRLDistributionPoints, e.shardURL(row.CRLShard))
		}
		shardOf[serial] = row.CRLShard
		byShard[row.CRLShard] = append(byShard[row.CRLShard], c)
	}
	if len(byShard) != 4 {
		t.Fatalf("40 certificates fell in %d shards, want all 4", len(byShard))
	}
	// Revoke one certificate in each of shards 1..3 and two in shard 3; none
	// in shard 0, whose CRL must still be published, empty.
	want := map[int][]string{0: nil}
	for k, n := range map[int]int{1: 1, 2: 1, 3: 2} {
		if len(byShard[k]) < n {
			t.Fatalf("shard %d has %d certificates", k, len(byShard[k]))
		}
		for _, c := range byShard[k][:n] {
			serial := fmt.Sprintf("%x", c.SerialNumber)
			if err := e.store.RevokeCertificate(ctx, serial, time.Now().Add(-time.Minute), 1); err != nil {
				t.Fatal(err)
			}
			want[k] = append(want[k], serial)
		}
		slices.Sort(want[k])
	}
	e.pub.RefreshNow(ctx)

	crls := map[string]*x509.RevocationList{}
	for _, c := range certs {
		url := c.CRLDistributionPoints[0]
		if crls[url] == nil {
			crls[url] = e.fetchCRL(t, url)
		}
	}
	for k := 0; k < 4; k++ {
		crl := crls[e.shardURL(k)]
		if crl == nil {
			t.Fatalf("no certificate names shard %d's CRL", k)
		}
		if got := serialsOf(crl); !slices.Equal(got, want[k]) {
			t.Errorf("shard %d's CRL lists %v, want %v", k, got, want[k])
		}
	}
	// Each revoked serial is in its own shard's CRL and in no other.
	for serial, k := range shardOf {
		for url, crl := range crls {
			listed := slices.Contains(serialsOf(crl), serial)
			if listed && url != e.shardURL(k) {
				t.Errorf("serial %s of shard %d is listed in %s", serial, k, url)
			}
		}
	}
	if got, wantURLs := e.crlList(t), []string{e.shardURL(0), e.shardURL(1), e.shardURL(2), e.shardURL(3)}; !slices.Equal(got, wantURLs) {
		t.Fatalf("CRL list %q, want %q", got, wantURLs)
	}
	for _, bad := range []string{"/pki/int/0.crl", "/pki/int/01.crl", "/pki/int/4.crl", "/pki/int/128.crl", "/pki/int/-1.crl", "/pki/int/x.crl", "/pki/int/1.json"} {
		resp, err := http.Get(e.srv.URL + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", bad, resp.Status)
		}
	}

	// A revocation in one shard makes that shard's CRL again, and only it.
	made := e.pub.Metrics().CRLsPublished.Load()
	c := byShard[2][len(byShard[2])-1]
	if err := e.store.RevokeCertificate(ctx, fmt.Sprintf("%x", c.SerialNumber), time.Now(), 4); err != nil {
		t.Fatal(err)
	}
	e.pub.RefreshNow(ctx)
	if n := e.pub.Metrics().CRLsPublished.Load() - made; n != 1 {
		t.Fatalf("one revocation in shard 2 made %d CRLs, want 1", n)
	}
	// The served CRL is cached for a few seconds: read the stored one.
	stored, err := e.store.GetCRLShard(ctx, "int", 2)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(stored.DER)
	if err != nil || !slices.Contains(serialsOf(crl), fmt.Sprintf("%x", c.SerialNumber)) {
		t.Fatalf("shard 2's new CRL does not list the serial just revoked (%v)", err)
	}
}

// TestLoweringCRLShards: an operator who lowers crl_shards from 4 to 2 keeps
// the certificates of shards 2 and 3 covered: their CRLs are still made and
// listed, and new certificates go to shards 0 and 1 only.
func TestLoweringCRLShards(t *testing.T) {
	e := newShardEnv(t, 4)
	ctx := context.Background()
	old := e.issue(t, 40)
	e.pub.RefreshNow(ctx)
	var in3 *x509.Certificate
	for _, c := range old {
		if c.CRLDistributionPoints[0] == e.shardURL(3) {
			in3 = c
			break
		}
	}
	if in3 == nil {
		t.Fatal("no certificate in shard 3")
	}

	e.setShards(t, 2)
	for _, c := range e.issue(t, 20) {
		if u := c.CRLDistributionPoints[0]; u != e.shardURL(0) && u != e.shardURL(1) {
			t.Fatalf("with 2 shards a new certificate names %s", u)
		}
	}
	if err := e.store.RevokeCertificate(ctx, fmt.Sprintf("%x", in3.SerialNumber), time.Now().Add(-time.Minute), 1); err != nil {
		t.Fatal(err)
	}
	e.pub.RefreshNow(ctx)
	crl := e.fetchCRL(t, e.shardURL(3))
	if got := serialsOf(crl); !slices.Equal(got, []string{fmt.Sprintf("%x", in3.SerialNumber)}) {
		t.Fatalf("shard 3's CRL after lowering the count lists %v", got)
	}
	if got, want := e.crlList(t), []string{e.shardURL(0), e.shardURL(1), e.shardURL(2), e.shardURL(3)}; !slices.Equal(got, want) {
		t.Fatalf("CRL list after lowering the count %q, want %q", got, want)
	}
}

// TestOneShardIsTheUnshardedCRL: crl_shards 1 (the default) changes nothing:
// certificates name crl_url, the one CRL is served there, and the list holds
// that URL alone.
func TestOneShardIsTheUnshardedCRL(t *testing.T) {
	e := newShardEnv(t, 1)
	ctx := context.Background()
	certs := e.issue(t, 3)
	for _, c := range certs {
		if !slices.Equal(c.CRLDistributionPoints, []string{e.srv.URL + "/pki/int.crl"}) {
			t.Fatalf("CRL distribution points %q", c.CRLDistributionPoints)
		}
	}
	if err := e.store.RevokeCertificate(ctx, fmt.Sprintf("%x", certs[1].SerialNumber), time.Now().Add(-time.Minute), 1); err != nil {
		t.Fatal(err)
	}
	e.pub.RefreshNow(ctx)
	if got := serialsOf(e.fetchCRL(t, e.srv.URL+"/pki/int.crl")); !slices.Equal(got, []string{fmt.Sprintf("%x", certs[1].SerialNumber)}) {
		t.Fatalf("CRL lists %v", got)
	}
	if got := e.crlList(t); !slices.Equal(got, []string{e.srv.URL + "/pki/int.crl"}) {
		t.Fatalf("CRL list %q", got)
	}
}

// TestCRLShardsRefused: a shard count out of range, or shards without a CRL
// URL, is refused with the key named.
func TestCRLShardsRefused(t *testing.T) {
	tok, root := issuancetest.Token(t), issuancetest.NewRoot(t)
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "refused", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	cert := root.Intermediate(t, "Anvil Refused", key.Public())
	for _, u := range []issuance.URLs{
		{CRLURL: "http://ca.example/int.crl", CRLShards: -1},
		{CRLURL: "http://ca.example/int.crl", CRLShards: issuance.MaxCRLShards + 1},
		{CRLShards: 2},
		{CRLURL: "http://ca.example/int.crl?x=1", CRLShards: 2},
	} {
		if _, err := issuance.NewIssuer(context.Background(), "int", cert, key, u); err == nil {
			t.Errorf("NewIssuer with %+v: no error", u)
		} else if !strings.Contains(err.Error(), "crl_shards") && !strings.Contains(err.Error(), "crl_url") {
			t.Errorf("NewIssuer with %+v: %v does not name the key", u, err)
		}
	}
}
