package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
)

// This file holds what the tests of the ACME extensions share: a lego dns-01
// provider that writes into the test's DNS server, more of the raw client, a
// way to run `anvil admin` as an operator would, and checks of the problem
// documents clients see.

// dnsProvider is a lego challenge.Provider for dns-01: it publishes the TXT
// record in the test's DNS server, the one validation asks, as a DNS hosting
// API would.
type dnsProvider struct {
	dns *DNSServer

	mu        sync.Mutex
	presented []string // the FQDNs it was asked to publish, in order
}

func (p *dnsProvider) Present(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	p.dns.AddTXT(info.EffectiveFQDN, info.Value)
	p.mu.Lock()
	p.presented = append(p.presented, info.EffectiveFQDN)
	p.mu.Unlock()
	return nil
}

func (p *dnsProvider) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	p.dns.RemoveTXT(info.EffectiveFQDN, info.Value)
	return nil
}

// Timeout makes lego poll its propagation check every 50 ms rather than wait
// two seconds before the first look: the record is there at once.
func (p *dnsProvider) Timeout() (timeout, interval time.Duration) {
	return 30 * time.Second, 50 * time.Millisecond
}

// Presented returns the FQDNs the provider published records at.
func (p *dnsProvider) Presented() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.presented...)
}

// useDNS01 makes a lego client answer dns-01 and nothing else. lego checks
// that the record has propagated before it tells the CA to look: its
// recursive-resolver check asks the test's DNS server (lego's default DNS
// client is process-wide, hence the restore on cleanup); the check of the
// zone's authoritative servers is off, as the test zone has no NS records.
func useDNS01(t *testing.T, ca *CA, client *lego.Client) *dnsProvider {
	t.Helper()
	prev := dns01.DefaultClient()
	opts := dns01.NewOptions()
	opts.RecursiveNameservers = []string{ca.DNS.Addr}
	opts.Timeout = 5 * time.Second
	dns01.SetDefaultClient(dns01.NewClient(opts))
	t.Cleanup(func() { dns01.SetDefaultClient(prev) })

	client.Challenge.Remove(challenge.HTTP01)
	p := &dnsProvider{dns: ca.DNS}
	if err := client.Challenge.SetDNS01Provider(p, dns01.DisableAuthoritativeNssPropagationRequirement()); err != nil {
		t.Fatal(err)
	}
	return p
}

// obtainReq is the request the tests make of lego: a P-256 certificate key
// and the issuer in the bundle.
func obtainReq(names ...string) certificate.ObtainRequest {
	return certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256}
}

// mustObtain obtains a certificate with lego or fails the test.
func mustObtain(t *testing.T, client *lego.Client, req certificate.ObtainRequest) *certificate.Resource {
	t.Helper()
	res, err := client.Certificate.Obtain(context.Background(), req)
	if err != nil {
		t.Fatalf("obtain %v: %v", req.Domains, err)
	}
	return res
}

// legoProblem returns the ACME problem document inside an error lego
// returned, failing the test if there is none.
func legoProblem(t *testing.T, err error) *legoacme.ProblemDetails {
	t.Helper()
	if err == nil {
		t.Fatal("the request succeeded; want an ACME problem")
	}
	var p *legoacme.ProblemDetails
	if !errors.As(err, &p) {
		t.Fatalf("error carries no ACME problem document: %v", err)
	}
	return p
}

// expectLegoProblem checks that lego failed with a problem of the given type
// (without the namespace), as its user would read it.
func expectLegoProblem(t *testing.T, err error, wantType string) *legoacme.ProblemDetails {
	t.Helper()
	p := legoProblem(t, err)
	if p.Type != "urn:ietf:params:acme:error:"+wantType {
		t.Fatalf("problem %s (%d: %s), want %s", p.Type, p.HTTPStatus, p.Detail, wantType)
	}
	t.Logf("lego saw %s: %s", wantType, p.Detail)
	return p
}

// leafOf parses the first certificate of a PEM bundle.
func leafOf(t *testing.T, bundle []byte) *x509.Certificate {
	t.Helper()
	chain := readChain(t, bundle)
	if len(chain) == 0 {
		t.Fatal("no certificate in the bundle")
	}
	return chain[0]
}

// certKey parses the PEM private key lego generated for a certificate.
func certKey(t *testing.T, res *certificate.Resource) crypto.Signer {
	t.Helper()
	return parseKeyPEM(t, res.PrivateKey)
}

// parseKeyPEM parses a PEM private key (PKCS#8, SEC 1 or PKCS#1).
func parseKeyPEM(t *testing.T, pemBytes []byte) crypto.Signer {
	t.Helper()
	k, err := certcrypto.ParsePEMPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawAs is the raw client of a lego account: the same key and account URL,
// for requests lego will not make the way a test needs.
func rawAs(t *testing.T, ca *CA, key crypto.Signer, accountURL string) *rawClient {
	t.Helper()
	c := newRawClient(t, ca, key)
	c.kid = accountURL
	return c
}

// as returns the client reporting to another test, for use in a subtest.
func (c *rawClient) as(t *testing.T) *rawClient {
	cp := *c
	cp.t = t
	return &cp
}

// identifiers turns names into ACME identifiers: IP addresses as "ip", the
// rest as "dns".
func identifiers(names ...string) []map[string]string {
	var ids []map[string]string
	for _, n := range names {
		typ := "dns"
		if net.ParseIP(n) != nil {
			typ = "ip"
		}
		ids = append(ids, map[string]string{"type": typ, "value": n})
	}
	return ids
}

// acmeOrder is the part of an order object the tests read.
type acmeOrder struct {
	Status         string          `json:"status"`
	Authorizations []string        `json:"authorizations"`
	Finalize       string          `json:"finalize"`
	Certificate    string          `json:"certificate"`
	Profile        string          `json:"profile"`
	Replaces       string          `json:"replaces"`
	Error          json.RawMessage `json:"error"`
}

// acmeAuthz is an authorization object.
type acmeAuthz struct {
	Identifier struct{ Type, Value string } `json:"identifier"`
	Status     string                       `json:"status"`
	Wildcard   bool                         `json:"wildcard"`
	Challenges []acmeChallenge              `json:"challenges"`
}

// acmeChallenge is a challenge object.
type acmeChallenge struct {
	Type   string       `json:"type"`
	URL    string       `json:"url"`
	Status string       `json:"status"`
	Token  string       `json:"token"`
	Error  *acmeProblem `json:"error"`
}

// acmeProblem is a problem document.
type acmeProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// challenge returns the authorization's challenge of a type, failing the test
// if it offers none.
func (a acmeAuthz) challenge(t *testing.T, typ string) acmeChallenge {
	t.Helper()
	for _, c := range a.Challenges {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("authorization for %s offers no %s challenge", a.Identifier.Value, typ)
	return acmeChallenge{}
}

// challengeTypes lists the types an authorization offers.
func (a acmeAuthz) challengeTypes() []string {
	var out []string
	for _, c := range a.Challenges {
		out = append(out, c.Type)
	}
	return out
}

// newOrder creates an order with extra newOrder fields (profile, replaces)
// and returns its URL and object; it fails the test unless the server
// answers 201.
func (c *rawClient) newOrder(extra map[string]any, names ...string) (string, acmeOrder) {
	c.t.Helper()
	payload := map[string]any{"identifiers": identifiers(names...)}
	for k, v := range extra {
		payload[k] = v
	}
	st, body, h := c.post(c.url("newOrder"), payload)
	if st != http.StatusCreated {
		c.t.Fatalf("newOrder %v: %d %s", names, st, body)
	}
	var o acmeOrder
	if err := json.Unmarshal(body, &o); err != nil {
		c.t.Fatal(err)
	}
	return h.Get("Location"), o
}

// order fetches an order.
func (c *rawClient) order(url string) acmeOrder {
	c.t.Helper()
	st, body := c.postAsGet(url)
	if st != http.StatusOK {
		c.t.Fatalf("order %s: %d %s", url, st, body)
	}
	var o acmeOrder
	if err := json.Unmarshal(body, &o); err != nil {
		c.t.Fatal(err)
	}
	return o
}

// authz fetches an authorization.
func (c *rawClient) authz(url string) acmeAuthz {
	c.t.Helper()
	st, body := c.postAsGet(url)
	if st != http.StatusOK {
		c.t.Fatalf("authorization %s: %d %s", url, st, body)
	}
	var a acmeAuthz
	if err := json.Unmarshal(body, &a); err != nil {
		c.t.Fatal(err)
	}
	return a
}

// respond tells the server a challenge is ready and returns the challenge as
// the server then shows it; it waits (generously) while it is processing.
func (c *rawClient) respond(ch acmeChallenge) acmeChallenge {
	c.t.Helper()
	st, body, _ := c.post(ch.URL, map[string]any{})
	if st != http.StatusOK {
		c.t.Fatalf("challenge response: %d %s", st, body)
	}
	var got acmeChallenge
	json.Unmarshal(body, &got)
	for deadline := time.Now().Add(60 * time.Second); got.Status == "processing"; {
		if time.Now().After(deadline) {
			c.t.Fatalf("challenge still processing after 60s: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
		st, body = c.postAsGet(ch.URL)
		if st != http.StatusOK {
			c.t.Fatalf("challenge: %d %s", st, body)
		}
		json.Unmarshal(body, &got)
	}
	return got
}

// csrFor is a finalize payload: a CSR of a fresh P-256 key for names.
func csrFor(t *testing.T, names ...string) map[string]string {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}
}

// finalizeOrder finalizes a ready order with a CSR of a fresh P-256 key for
// names and returns the certificate.
func (c *rawClient) finalizeOrder(o acmeOrder, names ...string) *x509.Certificate {
	c.t.Helper()
	st, body, _ := c.post(o.Finalize, csrFor(c.t, names...))
	if st != http.StatusOK || jsonField(c.t, body, "status") != "valid" {
		c.t.Fatalf("finalize: %d %s", st, body)
	}
	st, pemChain := c.postAsGet(jsonField(c.t, body, "certificate"))
	if st != http.StatusOK {
		c.t.Fatalf("certificate: %d %s", st, pemChain)
	}
	return readChain(c.t, pemChain)[0]
}

// revoke asks for a revocation of cert; reason < 0 leaves the reason out.
func (c *rawClient) revoke(cert *x509.Certificate, reason int) (int, []byte, http.Header) {
	c.t.Helper()
	payload := map[string]any{"certificate": base64.RawURLEncoding.EncodeToString(cert.Raw)}
	if reason >= 0 {
		payload["reason"] = reason
	}
	return c.post(c.url("revokeCert"), payload)
}

// race sends prepared requests all at once, each on its own connection, and
// returns the status and Location of each answer, in the order given. It
// calls no testing function from its goroutines.
func (c *rawClient) race(urls []string, bodies [][]byte) (statuses []int, locations []string) {
	c.t.Helper()
	statuses, locations = make([]int, len(bodies)), make([]string, len(bodies))
	errs := make([]error, len(bodies))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := c.ca.HTTPClient()
			<-start
			resp, err := client.Post(urls[i], "application/jose+json", bytes.NewReader(bodies[i]))
			if err != nil {
				errs[i] = err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i], locations[i] = resp.StatusCode, resp.Header.Get("Location")
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
	return statuses, locations
}

// directoryMeta returns the directory's meta object.
func (c *rawClient) directoryMeta() map[string]any {
	m, _ := c.dir["meta"].(map[string]any)
	return m
}

// linkRel returns the targets of the Link header values with relation rel.
func linkRel(h http.Header, rel string) []string {
	re := regexp.MustCompile(`^\s*<([^>]*)>\s*;\s*rel="?([^";]+)"?`)
	var out []string
	for _, v := range h.Values("Link") {
		for part := range strings.SplitSeq(v, ",") {
			if m := re.FindStringSubmatch(part); m != nil && m[2] == rel {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// admin runs `anvil admin` against the CA's database, as its operator would,
// from the CA's directory (the configuration's paths are relative to it).
func (ca *CA) admin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(anvilBin, append([]string{"admin"}, args...)...)
	cmd.Dir = ca.Dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// certShow is `anvil admin cert show` for a certificate.
func (ca *CA) certShow(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	out, err := ca.admin(t, "cert", "show", "--config", filepath.Base(ca.cfgPath), "--serial", cert.SerialNumber.Text(16))
	if err != nil {
		t.Fatalf("anvil admin cert show: %v\n%s", err, out)
	}
	return out
}

// certStatus is the status line of `anvil admin cert show`.
func (ca *CA) certStatus(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	for line := range strings.SplitSeq(ca.certShow(t, cert), "\n") {
		if v, ok := strings.CutPrefix(line, "status:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("anvil admin cert show printed no status")
	return ""
}

// p256 reports whether a key is ECDSA P-256, which the raw client signs with.
func p256(k crypto.Signer) bool {
	e, ok := k.(*ecdsa.PrivateKey)
	return ok && e.Curve.Params().Name == "P-256"
}
