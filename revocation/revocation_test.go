package revocation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/ledger"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

type env struct {
	tok   *hsm.Token
	root  *issuancetest.Root
	iss   *issuance.Issuer
	svc   *issuance.Service
	store storage.Store
	pub   *revocation.Publisher
	srv   *httptest.Server
	certs []*x509.Certificate
}

func newEnv(t testing.TB, n int) *env {
	t.Helper()
	return newEnvConfig(t, n, func(*revocation.Config) {})
}

// newEnvConfig is newEnv with the publisher's configuration adjusted.
func newEnvConfig(t testing.TB, n int, adjust func(*revocation.Config)) *env {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &env{tok: issuancetest.Token(t), root: issuancetest.NewRoot(t)}
	e.iss = issuancetest.Issuer(t, e.tok, e.root, hsm.ECDSAP256)
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	e.svc, err = issuance.NewService(issuance.ServiceConfig{Issuers: []*issuance.Issuer{e.iss},
		Profiles: []*issuance.Profile{issuancetest.Profile(t, "tls", issuance.ProfileConfig{})},
		Ledger:   ledger.Issuance{Store: store}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c%d.example.com", i)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
		got, err := e.svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: []string{name}, Requester: "test"})
		if err != nil {
			t.Fatal(err)
		}
		e.certs = append(e.certs, got.Cert)
	}
	signer, err := e.iss.NewOCSPSigner(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := revocation.Config{Logger: quiet, CRLCheckInterval: time.Hour}
	adjust(&cfg)
	e.pub, err = revocation.New(context.Background(), cfg, store, []*issuance.OCSPSigner{signer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.pub.Handler("/ocsp"))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) revoke(t testing.TB, c *x509.Certificate, reason int) {
	t.Helper()
	if err := e.store.RevokeCertificate(context.Background(), fmt.Sprintf("%x", c.SerialNumber), time.Now().Add(-time.Minute), reason); err != nil {
		t.Fatal(err)
	}
}

// query sends an OCSP request by POST and parses the answer with x/crypto/ocsp,
// which also verifies its signature against the issuer.
func (e *env) query(t testing.TB, c *x509.Certificate, opts *ocsp.RequestOptions) *ocsp.Response {
	t.Helper()
	req, err := ocsp.CreateRequest(c, e.iss.Certificate(), opts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parsed, err := ocsp.ParseResponseForCert(body, c, e.iss.Certificate())
	if err != nil {
		t.Fatalf("response does not parse or verify: %v", err)
	}
	return parsed
}

func TestOCSPStatuses(t *testing.T) {
	e := newEnv(t, 2)
	good, revoked := e.certs[0], e.certs[1]
	if r := e.query(t, good, nil); r.Status != ocsp.Good || r.NextUpdate.Sub(r.ThisUpdate) != 4*24*time.Hour {
		t.Fatalf("good: status %d, validity %s", r.Status, r.NextUpdate.Sub(r.ThisUpdate))
	}
	if r := e.query(t, revoked, &ocsp.RequestOptions{Hash: crypto.SHA256}); r.Status != ocsp.Good {
		t.Fatalf("before revocation: %d", r.Status)
	}
	e.revoke(t, revoked, 1)
	// Shown at once, though a good response for it is cached.
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		r := e.query(t, revoked, &ocsp.RequestOptions{Hash: h})
		if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise || r.RevokedAt.IsZero() {
			t.Fatalf("revoked (%v): status %d reason %d", h, r.Status, r.RevocationReason)
		}
	}
	// A serial this CA never issued, under its own issuer: the unsigned
	// unauthorized response (RFC 6960 2.3), not a signed "unknown".
	fake := *good
	fake.SerialNumber = big17()
	if got := e.post(t, mustRequest(t, &fake, e.iss.Certificate())); !bytes.Equal(got, ocsp.UnauthorizedErrorResponse) {
		t.Fatalf("unknown serial: got %x, want unauthorized", got)
	}
}

// post sends a DER OCSP request by POST and returns the body of the answer,
// which is always 200 application/ocsp-response.
func (e *env) post(t testing.TB, body []byte) []byte {
	t.Helper()
	resp, err := http.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("status %d type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return b
}

func big17() *big.Int { return new(big.Int).SetBytes(bytes.Repeat([]byte{0x42}, 17)) }

func TestOCSPRefusals(t *testing.T) {
	e := newEnv(t, 1)
	post := func(body []byte) []byte {
		resp, err := http.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("status %d type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return b
	}
	for name, body := range map[string][]byte{
		"garbage":        []byte("not DER at all"),
		"empty":          nil,
		"truncated":      mustRequest(t, e.certs[0], e.iss.Certificate())[:20],
		"too large":      bytes.Repeat([]byte{0x30}, 10000),
		"trailing bytes": append(mustRequest(t, e.certs[0], e.iss.Certificate()), 0, 0),
	} {
		if got := post(body); !bytes.Equal(got, ocsp.MalformedRequestErrorResponse) {
			t.Errorf("%s: got %x, want malformedRequest", name, got)
		}
	}
	// A certificate of an issuer this CA does not have.
	other := issuancetest.NewRoot(t)
	if got := post(mustRequest(t, other.Cert, other.Cert)); !bytes.Equal(got, ocsp.UnauthorizedErrorResponse) {
		t.Errorf("unknown issuer: got %x, want unauthorized", got)
	}
	// GET with a base64 path that does not decode.
	resp, err := http.Get(e.srv.URL + "/ocsp/not*base64")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, ocsp.MalformedRequestErrorResponse) {
		t.Errorf("bad GET: %x", b)
	}
	if e.pub.Metrics().OCSPErrors.Load() < 7 {
		t.Errorf("errors counted: %d", e.pub.Metrics().OCSPErrors.Load())
	}
}

func mustRequest(t testing.TB, c, issuer *x509.Certificate) []byte {
	b, err := ocsp.CreateRequest(c, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A request with a nonce is answered from the cache like any other (RFC 8954
// lets a responder ignore the nonce): many requests for one certificate, each
// with its own nonce and all at once, cost one HSM signature, and every one
// gets the same pre-signed response, without a nonce.
func TestOCSPNonceIsIgnored(t *testing.T) {
	e := newEnv(t, 1)
	plain := mustRequest(t, e.certs[0], e.iss.Certificate())
	before := e.tok.Stats().Signs
	const n = 200
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := make([]byte, 16)
			rand.Read(nonce)
			req := addNonce(t, plain, nonce)
			resp, err := http.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
			if err != nil {
				t.Error(err)
				return
			}
			bodies[i], _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(bodies[i], nonce) {
				t.Errorf("request %d: its nonce is echoed", i)
			}
		}()
	}
	wg.Wait()
	if signs := e.tok.Stats().Signs - before; signs != 1 {
		t.Fatalf("%d HSM signatures for %d requests with nonces for one certificate, want 1", signs, n)
	}
	r, err := ocsp.ParseResponseForCert(bodies[0], e.certs[0], e.iss.Certificate())
	if err != nil || r.Status != ocsp.Good {
		t.Fatalf("response: %v", err)
	}
	for _, ext := range r.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}) {
			t.Fatal("the response carries a nonce extension")
		}
	}
	for i, b := range bodies {
		if !bytes.Equal(b, bodies[0]) {
			t.Fatalf("response %d differs from response 0: not the one cached response", i)
		}
	}
	// The request without a nonce gets the very same bytes.
	if got := e.post(t, plain); !bytes.Equal(got, bodies[0]) {
		t.Fatal("a request without a nonce got another response")
	}
	if signs := e.tok.Stats().Signs - before; signs != 1 {
		t.Fatalf("%d HSM signatures, want 1", signs)
	}
}

// addNonce rebuilds a request with a nonce extension, as openssl sends one.
func addNonce(t testing.TB, req, nonce []byte) []byte {
	var r struct {
		TBS struct {
			List []asn1.RawValue
		}
	}
	if _, err := asn1.Unmarshal(req, &r); err != nil {
		t.Fatal(err)
	}
	val, _ := asn1.Marshal(nonce)
	type ext struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}
	out, err := asn1.Marshal(struct {
		TBS struct {
			List []asn1.RawValue
			Ext  []ext `asn1:"explicit,tag:2"`
		}
	}{TBS: struct {
		List []asn1.RawValue
		Ext  []ext `asn1:"explicit,tag:2"`
	}{List: r.TBS.List, Ext: []ext{{ID: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: val}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A burst of 10,000 OCSP requests for 100 certificates, by GET and POST from
// 16 clients at once, costs one HSM signature per certificate.
func TestOCSPBurstIsCached(t *testing.T) {
	e := newEnv(t, 100)
	reqs := make([][]byte, len(e.certs))
	for i, c := range e.certs {
		reqs[i] = mustRequest(t, c, e.iss.Certificate())
	}
	before := e.tok.Stats().Signs
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{}
			for i := w; i < 10000; i += 16 {
				req := reqs[i%len(reqs)]
				var resp *http.Response
				var err error
				if i%2 == 0 {
					resp, err = client.Get(e.srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
				} else {
					resp, err = client.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
				}
				if err != nil {
					mu.Lock()
					bad++
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if _, err := ocsp.ParseResponse(body, e.iss.Certificate()); err != nil {
					mu.Lock()
					if bad == 0 {
						t.Logf("first failure: %v (%d bytes: %x)", err, len(body), body[:min(len(body), 16)])
					}
					bad++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of 10000 requests failed", bad)
	}
	signs := e.tok.Stats().Signs - before
	t.Logf("10000 OCSP requests for 100 certificates: %d HSM signatures, %d cache hits", signs, e.pub.Metrics().OCSPCacheHits.Load())
	if signs != 100 {
		t.Fatalf("%d HSM signatures, want 100 (one per certificate)", signs)
	}
}

// The CRL lists the revoked serials with their reasons, verifies against the
// issuer, and names the URL of the certificates' CRL distribution point.
func TestCRL(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	e.pub.RefreshNow(ctx)
	first := e.fetchCRL(t)
	if len(first.RevokedCertificateEntries) != 0 {
		t.Fatalf("first CRL lists %d", len(first.RevokedCertificateEntries))
	}
	e.revoke(t, e.certs[0], 1)
	e.revoke(t, e.certs[2], 5)
	e.pub.RefreshNow(ctx)
	crl := e.fetchCRL(t)
	if crl.Number.Cmp(first.Number) <= 0 {
		t.Fatalf("CRL number %s is not greater than %s", crl.Number, first.Number)
	}
	reasons := map[string]int{}
	for _, rc := range crl.RevokedCertificateEntries {
		reasons[fmt.Sprintf("%x", rc.SerialNumber)] = rc.ReasonCode
	}
	if len(reasons) != 2 || reasons[fmt.Sprintf("%x", e.certs[0].SerialNumber)] != 1 || reasons[fmt.Sprintf("%x", e.certs[2].SerialNumber)] != 5 {
		t.Fatalf("CRL entries %v", reasons)
	}
	if d := crl.NextUpdate.Sub(crl.ThisUpdate); d != 7*24*time.Hour {
		t.Fatalf("CRL validity %s", d)
	}
	idp := false
	for _, ext := range crl.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) && ext.Critical && bytes.Contains(ext.Value, []byte(e.certs[0].CRLDistributionPoints[0])) {
			idp = true
		}
	}
	if !idp {
		t.Fatal("the CRL's issuing distribution point does not name the certificates' CRL DP")
	}
	// Nothing new: the next check makes no CRL.
	made := e.pub.Metrics().CRLsPublished.Load()
	e.pub.RefreshNow(ctx)
	if e.pub.Metrics().CRLsPublished.Load() != made {
		t.Fatal("a CRL was made though nothing changed")
	}
}

func (e *env) fetchCRL(t *testing.T) *x509.RevocationList {
	t.Helper()
	u := e.certs[0].CRLDistributionPoints[0]
	path := u[len("http://ca.example"):]
	var body []byte
	// The handler caches the stored CRL for a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "application/pkix-crl" {
			crl, err := x509.ParseRevocationList(body)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(e.iss.Certificate()); err != nil {
				t.Fatalf("CRL signature: %v", err)
			}
			if stored, err := e.store.GetCRLShard(context.Background(), e.iss.Name(), 0); err == nil && stored.Number == crl.Number.Int64() {
				return crl
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRL at %s: %d", path, len(body))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkOCSPFromCache measures OCSP responses served from the cache.
func BenchmarkOCSPFromCache(b *testing.B) {
	e := newEnv(b, 100)
	reqs := make([][]byte, len(e.certs))
	for i, c := range e.certs {
		reqs[i] = mustRequest(b, c, e.iss.Certificate())
		if _, _, _, err := e.pub.Respond(context.Background(), reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, _, _, err := e.pub.Respond(context.Background(), reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "responses/s")
}

// BenchmarkOCSPOverHTTP measures cached OCSP responses through the HTTP
// handler, GET and keep-alive, client in the same process.
func BenchmarkOCSPOverHTTP(b *testing.B) {
	e := newEnv(b, 100)
	urls := make([]string, len(e.certs))
	for i, c := range e.certs {
		urls[i] = e.srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(mustRequest(b, c, e.iss.Certificate()))
		if _, _, _, err := e.pub.Respond(context.Background(), mustRequest(b, c, e.iss.Certificate())); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := client.Get(urls[i%len(urls)])
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "responses/s")
}

// The response cache holds what is asked about, and nothing more: responses
// for serials this CA never issued are not kept (anyone can ask about any
// number of them), and responses nobody asked for during a whole validity
// period are dropped.
func TestOCSPCacheIsBounded(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnvConfig(t, 1, func(c *revocation.Config) { c.Now = clock })
	stranger := &x509.Certificate{SerialNumber: big.NewInt(0x5eed), RawIssuer: e.certs[0].RawIssuer}
	for range 2 {
		e.query(t, e.certs[0], nil)
		if got := e.post(t, mustRequest(t, stranger, e.iss.Certificate())); !bytes.Equal(got, ocsp.UnauthorizedErrorResponse) {
			t.Fatalf("stranger: got %x, want unauthorized", got)
		}
	}
	if n := revocation.CachedOCSPResponses(e.pub); n != 1 {
		t.Fatalf("%d cached responses after asking about one certificate and one stranger, want 1", n)
	}
	mu.Lock()
	now = now.Add(5 * 24 * time.Hour) // past nextUpdate (4 days)
	mu.Unlock()
	revocation.EvictOCSP(e.pub)
	if n := revocation.CachedOCSPResponses(e.pub); n != 0 {
		t.Fatalf("%d cached responses after their nextUpdate, want 0", n)
	}
}
