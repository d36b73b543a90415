package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/registration"
	"golang.org/x/crypto/ocsp"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is a parsed /metrics page.
type scrape struct {
	text    string
	samples []sample
}

// parseMetrics reads the Prometheus text exposition format (what promhttp
// writes without negotiation): `name{k="v",...} value` lines and comments.
func parseMetrics(t *testing.T, text string) *scrape {
	t.Helper()
	s := &scrape{text: text}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sm := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			sm.name = line[:i]
			end := strings.LastIndex(line, "}")
			for _, kv := range splitLabels(line[i+1 : end]) {
				k, v, _ := strings.Cut(kv, "=")
				uv, err := strconv.Unquote(v)
				if err != nil {
					t.Fatalf("metrics line %q: label %q: %v", line, kv, err)
				}
				sm.labels[k] = uv
			}
			rest = strings.TrimSpace(line[end+1:])
		} else {
			sm.name, rest, _ = strings.Cut(line, " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sm.value = v
		s.samples = append(s.samples, sm)
	}
	return s
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ',' && !inQuote:
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// sum adds the samples of name whose labels include want.
func (s *scrape) sum(name string, want map[string]string) (float64, int) {
	total, n := 0.0, 0
next:
	for _, sm := range s.samples {
		if sm.name != name {
			continue
		}
		for k, v := range want {
			if sm.labels[k] != v {
				continue next
			}
		}
		total += sm.value
		n++
	}
	return total, n
}

// atLeast checks that the samples of name with labels want add up to min or more.
func (s *scrape) atLeast(t *testing.T, min float64, name string, want map[string]string) {
	t.Helper()
	v, n := s.sum(name, want)
	if n == 0 {
		t.Errorf("%s%v: no such series", name, want)
		return
	}
	if v < min {
		t.Errorf("%s%v = %v, want >= %v", name, want, v, min)
	}
}

// each checks every sample of name with labels want against ok.
func (s *scrape) each(t *testing.T, name string, want map[string]string, what string, ok func(float64) bool) {
	t.Helper()
	_, n := s.sum(name, want)
	if n == 0 {
		t.Errorf("%s%v: no such series", name, want)
	}
	for _, sm := range s.samples {
		if sm.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && sm.labels[k] == v
		}
		if match && !ok(sm.value) {
			t.Errorf("%s%v = %v, want %s", name, sm.labels, sm.value, what)
		}
	}
}

func (ca *CA) scrapeMetrics(t *testing.T) *scrape {
	t.Helper()
	return scrapePort(t, ca.AdminPort)
}

// scrapePort reads /metrics from an admin listener on loopback.
func scrapePort(t *testing.T, port int) *scrape {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return parseMetrics(t, string(b))
}

type labels = map[string]string

// After real ACME flows — lego accounts, http-01 orders on both issuers,
// finalize, revocation, OCSP, a rate-limited registration — /metrics holds
// every family an operator watches, with values that match what happened,
// and no label carries a subscriber's name or a serial.
func TestMetricsAfterACMEFlows(t *testing.T) {
	ca := NewCA(t, WithACME(`rate_limits:
  new_accounts_per_ip: {count: 2, period: 1h}`))
	client, user := legoClient(t, ca, newKey(t))
	register(t, client, user)

	type obtained struct {
		names []string
		key   certcrypto.KeyType
	}
	var leaves []*x509.Certificate
	var issuers []*x509.Certificate
	for _, o := range []obtained{
		{[]string{"m1.metrics.anvil-e2e.com", "m2.metrics.anvil-e2e.com"}, certcrypto.EC256},
		{[]string{"m3.metrics.anvil-e2e.com"}, certcrypto.EC256},
		{[]string{"m4.metrics.anvil-e2e.com"}, certcrypto.RSA2048},
	} {
		res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: o.names, Bundle: true, KeyType: o.key})
		if err != nil {
			t.Fatalf("obtain %v: %v", o.names, err)
		}
		chain := readChain(t, res.Certificate)
		leaves, issuers = append(leaves, chain[0]), append(issuers, chain[1])
	}

	// The second account is the last 127.0.0.1 may make: the third is refused.
	c2, u2 := legoClient(t, ca, newKey(t))
	register(t, c2, u2)
	c3, _ := legoClient(t, ca, newKey(t))
	if _, err := c3.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true}); err == nil {
		t.Fatal("a third account from one IP was not rate limited")
	}

	// Revoke the first certificate, then ask OCSP about it twice (the second
	// answer comes from the cache) and once with garbage.
	reason := uint(1)
	if err := client.Certificate.RevokeWithReason(context.Background(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaves[0].Raw}), &reason); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	ocspURL := fmt.Sprintf("http://127.0.0.1:%d/ocsp", ca.PKIPort)
	ocspReq, err := ocsp.CreateRequest(leaves[0], issuers[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{ocspReq, ocspReq, []byte("\x30\x03bad")} {
		resp, err := http.Post(ocspURL, "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// The CRL publisher lists the revocation within its check interval (2 s).
	var m *scrape
	deadline := time.Now().Add(60 * time.Second)
	for {
		m = ca.scrapeMetrics(t)
		if v, _ := m.sum("anvil_crl_entries", labels{"issuer": "int-ecdsa", "source": "store"}); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anvil_crl_entries{issuer=int-ecdsa} did not reach 1 within 60 s:\n%s", grepLines(m.text, "anvil_crl_"))
		}
		time.Sleep(500 * time.Millisecond)
	}

	const finalize = "/acme/order/{id}/finalize"
	// HTTP by route template, method and status, with latency.
	m.atLeast(t, 3, "anvil_http_requests_total", labels{"route": finalize, "method": "POST", "status": "200"})
	m.atLeast(t, 3, "anvil_http_request_duration_seconds_count", labels{"route": finalize, "method": "POST"})
	m.atLeast(t, 2, "anvil_http_requests_total", labels{"route": "/acme/new-account", "status": "201"})
	m.atLeast(t, 1, "anvil_http_requests_total", labels{"route": "/acme/new-account", "status": "429"})
	m.atLeast(t, 1, "anvil_http_requests_total", labels{"route": "/acme/revoke-cert", "status": "200"})
	// Problems by type, rate limits by limit.
	m.atLeast(t, 1, "anvil_acme_problems_total", labels{"type": "rateLimited"})
	m.atLeast(t, 1, "anvil_rate_limit_refusals_total", labels{"limit": "new_accounts_per_ip"})
	// Orders.
	m.atLeast(t, 3, "anvil_orders_created_total", nil)
	m.atLeast(t, 3, "anvil_order_finalizations_started_total", nil)
	m.atLeast(t, 3, "anvil_orders_finalized_total", labels{"outcome": "valid"})
	// Validations by challenge and outcome, with latency; CAA checks.
	m.atLeast(t, 4, "anvil_validations_total", labels{"challenge": "http-01", "outcome": "valid"})
	m.atLeast(t, 4, "anvil_validation_duration_seconds_count", labels{"challenge": "http-01"})
	m.atLeast(t, 4, "anvil_caa_checks_total", labels{"outcome": "allowed"})
	// Issuances by issuer, profile and outcome, with latency and its parts.
	m.atLeast(t, 2, "anvil_issuances_total", labels{"issuer": "int-ecdsa", "profile": "default", "outcome": "issued"})
	m.atLeast(t, 1, "anvil_issuances_total", labels{"issuer": "int-rsa", "profile": "default", "outcome": "issued"})
	m.atLeast(t, 2, "anvil_issuance_duration_seconds_count", labels{"issuer": "int-ecdsa", "profile": "default", "outcome": "issued"})
	for _, phase := range []string{"lint", "hsm_sign", "store"} {
		m.atLeast(t, 2, "anvil_issuance_phase_duration_seconds_count", labels{"phase": phase, "issuer": "int-ecdsa"})
	}
	m.each(t, "anvil_issuance_duration_seconds_sum", labels{"issuer": "int-ecdsa", "outcome": "issued"}, "> 0", func(v float64) bool { return v > 0 })
	// HSM: signatures timed per token and key (certificates, CRLs, OCSP).
	m.atLeast(t, 3, "anvil_hsm_sign_duration_seconds_count", labels{"token": "anvil-dev-online", "key": "int-ecdsa"})
	m.atLeast(t, 1, "anvil_hsm_sign_duration_seconds_count", labels{"token": "anvil-dev-online", "key": "int-rsa"})
	m.each(t, "anvil_hsm_up", labels{"token": "anvil-dev-online"}, "1", func(v float64) bool { return v == 1 })
	// Database operations by name.
	// (ReserveSerial writes the serial and the lint certificate together.)
	for _, op := range []string{"CreateOrder", "UpdateOrder", "ReserveSerial", "RecordIssuedCertificate", "RevokeCertificate"} {
		m.atLeast(t, 1, "anvil_db_operation_duration_seconds_count", labels{"operation": op})
	}
	// The ledger: every certificate issued above is a row with that outcome.
	m.atLeast(t, 2, "anvil_ledger_rows", labels{"issuer": "int-ecdsa", "outcome": "issued"})
	m.atLeast(t, 1, "anvil_ledger_rows", labels{"issuer": "int-rsa", "outcome": "issued"})
	// CRLs of both issuers and the offline root's file CRL.
	m.each(t, "anvil_crl_next_update_seconds", nil, "> 0", func(v float64) bool { return v > 0 })
	m.each(t, "anvil_crl_age_seconds", labels{"source": "store"}, ">= 0 and < 1 day", func(v float64) bool { return v >= 0 && v < 86400 })
	m.each(t, "anvil_crl_size_bytes", labels{"source": "store"}, "> 0", func(v float64) bool { return v > 0 })
	m.each(t, "anvil_crl_entries", labels{"issuer": "int-rsa", "source": "store"}, "0", func(v float64) bool { return v == 0 })
	m.atLeast(t, 0, "anvil_crl_next_update_seconds", labels{"source": "file"})
	// OCSP by outcome, and the cache.
	m.atLeast(t, 2, "anvil_ocsp_responses_total", labels{"outcome": "successful"})
	m.atLeast(t, 1, "anvil_ocsp_responses_total", labels{"outcome": "malformedRequest"})
	m.atLeast(t, 1, "anvil_ocsp_cache_hits_total", nil)
	// Every issuer and root: seconds until notAfter.
	for _, want := range []labels{{"name": "int-ecdsa", "role": "issuer"}, {"name": "int-rsa", "role": "issuer"}, {"role": "root"}} {
		m.each(t, "anvil_ca_certificate_not_after_seconds", want, "> 30 days", func(v float64) bool { return v > 30*86400 })
	}
	// The Go runtime stays.
	m.atLeast(t, 1, "go_goroutines", nil)

	// Bounded labels: no subscriber name, no serial.
	for _, sm := range m.samples {
		for k, v := range sm.labels {
			if strings.Contains(v, "anvil-e2e.com") {
				t.Errorf("%s: label %s=%q carries a subscriber's name", sm.name, k, v)
			}
			for _, leaf := range leaves {
				if strings.Contains(strings.ToLower(v), leaf.SerialNumber.Text(16)) {
					t.Errorf("%s: label %s=%q carries a serial", sm.name, k, v)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(m.text, "anvil_"))
		return
	}
	t.Logf("/metrics excerpt:\n%s", excerpt(m.text))
}

// excerpt is the lines of the families the issue names, short of the
// histograms' buckets.
func excerpt(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "anvil_") || strings.Contains(line, "_bucket{") {
			continue
		}
		if strings.HasPrefix(line, "anvil_db_operation_duration_seconds") && !strings.Contains(line, "Order") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func grepLines(text, prefix string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A front end before a remote signer times its calls to the signer; the
// signer, which issues, counts the issuance, its parts and its HSM signature.
func TestMetricsSignerHop(t *testing.T) {
	c := newCluster(t, 1)
	client := c.legoSpread(t)
	for _, name := range []string{"hop1.metrics.anvil-e2e.com", "hop2.metrics.anvil-e2e.com"} {
		if _, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256}); err != nil {
			t.Fatalf("obtain %s: %v", name, err)
		}
	}
	front := scrapePort(t, c.frontAdmin[0])
	front.atLeast(t, 2, "anvil_signer_requests_total", labels{"operation": "issue", "outcome": "issued"})
	front.atLeast(t, 2, "anvil_signer_request_duration_seconds_count", labels{"operation": "issue"})
	front.each(t, "anvil_signer_request_duration_seconds_sum", labels{"operation": "issue"}, "> 0", func(v float64) bool { return v > 0 })
	front.atLeast(t, 2, "anvil_orders_finalized_total", labels{"outcome": "valid"})
	front.atLeast(t, 2, "anvil_http_requests_total", labels{"route": "/acme/order/{id}/finalize", "status": "200"})
	if _, n := front.sum("anvil_issuances_total", nil); n != 0 {
		t.Errorf("the front end reports issuances, which only the signer makes")
	}
	signer := scrapePort(t, c.signerAdmin)
	signer.atLeast(t, 2, "anvil_issuances_total", labels{"issuer": "int-ecdsa", "profile": "default", "outcome": "issued"})
	signer.atLeast(t, 2, "anvil_issuance_phase_duration_seconds_count", labels{"phase": "hsm_sign", "issuer": "int-ecdsa"})
	signer.atLeast(t, 2, "anvil_hsm_sign_duration_seconds_count", labels{"token": "anvil-dev-online", "key": "int-ecdsa"})
	signer.atLeast(t, 2, "anvil_db_operation_duration_seconds_count", labels{"operation": "RecordIssuedCertificate"})
	// The signer starts each issuance with the lease and the order's ledger
	// rows in one store call (one round trip on PostgreSQL), through the
	// metrics decorator too.
	signer.atLeast(t, 2, "anvil_db_operation_duration_seconds_count", labels{"operation": "TryLeaseAndCertificates"})
	signer.each(t, "anvil_ca_certificate_not_after_seconds", labels{"role": "issuer"}, "> 0", func(v float64) bool { return v > 0 })
	if t.Failed() {
		t.Logf("front end:\n%s\nsigner:\n%s", grepLines(front.text, "anvil_"), grepLines(signer.text, "anvil_"))
		return
	}
	t.Logf("front end:\n%s\nsigner:\n%s", grepLines(front.text, "anvil_signer_"), grepLines(signer.text, "anvil_issuances_total"))
}
