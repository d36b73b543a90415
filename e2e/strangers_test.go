package e2e

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// hsmSignatures sums anvil_hsm_signatures_total over the tokens, from the
// server's /metrics: the signatures the HSM made, as the operator sees them.
func hsmSignatures(t *testing.T, ca *CA) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", ca.AdminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum, seen := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "anvil_hsm_signatures_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum, seen = sum+v, true
	}
	if !seen {
		t.Fatal("/metrics has no anvil_hsm_signatures_total")
	}
	return sum
}

// No HSM work for strangers, against the built binary: once the CRLs are
// published, thousands of unauthenticated requests — OCSP for random serials
// of both intermediates (half with nonces, GET and POST), CRL and CA
// certificate downloads, the directory and newNonce — leave the HSM's
// signature counter where it was.
func TestStrangersCostNoHSMSignature(t *testing.T) {
	ca := NewCA(t)
	pki := fmt.Sprintf("http://127.0.0.1:%d", ca.PKIPort)
	get := func(client *http.Client, method, url string) int {
		req, _ := http.NewRequest(method, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// The CRLs are made at start, on schedule: wait for both.
	deadline := time.Now().Add(60 * time.Second)
	for _, path := range []string{"/pki/int-ecdsa.crl", "/pki/int-rsa.crl"} {
		for get(http.DefaultClient, "GET", pki+path) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("%s not published within 60 s", path)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var issuers []*x509.Certificate
	for _, name := range []string{"int-ecdsa.pem", "int-rsa.pem"} {
		issuers = append(issuers, readChain(t, mustRead(t, filepath.Join(ca.Dir, "var/dev/pki", name)))[0])
	}
	before := hsmSignatures(t, ca)

	const perIssuer = 1000
	for _, iss := range issuers {
		for i := 0; i < perIssuer; i++ {
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			opts := &ocsp.RequestOptions{Hash: crypto.SHA1}
			if i%4 < 2 {
				opts.Hash = crypto.SHA256
			}
			req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, iss, opts)
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				req = withOCSPNonce(t, req)
			}
			var resp *http.Response
			if i%3 == 0 {
				resp, err = http.Get(pki + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
			} else {
				resp, err = http.Post(pki+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(body, ocsp.UnauthorizedErrorResponse) {
				t.Fatalf("OCSP for random serial %x of %s: got %x, want unauthorized", serial, iss.Subject.CommonName, body)
			}
		}
	}
	acme := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Roots}}}
	for range 200 {
		for _, path := range []string{"/pki/int-ecdsa.crl", "/pki/int-rsa.crl", "/pki/int-ecdsa.der", "/pki/root.der", "/pki/root.crl"} {
			if code := get(http.DefaultClient, "GET", pki+path); code != http.StatusOK {
				t.Fatalf("GET %s: %d", path, code)
			}
		}
		if code := get(acme, "GET", ca.DirURL); code != http.StatusOK {
			t.Fatalf("directory: %d", code)
		}
		if code := get(acme, "HEAD", ca.BaseURL+"/acme/new-nonce"); code != http.StatusOK {
			t.Fatalf("newNonce: %d", code)
		}
	}
	after := hsmSignatures(t, ca)
	t.Logf("%d OCSP requests for random serials (half with nonces), 1000 CRL and CA certificate downloads, 200 directory and 200 newNonce requests: %.0f HSM signatures", 2*perIssuer, after-before)
	if after != before {
		t.Fatalf("%.0f HSM signatures for unauthenticated requests, want 0", after-before)
	}
}

// withOCSPNonce rebuilds a request with a random 16-byte nonce extension
// (RFC 8954), as openssl sends one.
func withOCSPNonce(t *testing.T, req []byte) []byte {
	t.Helper()
	var r struct {
		TBS struct {
			List []asn1.RawValue
		}
	}
	if rest, err := asn1.Unmarshal(req, &r); err != nil || len(rest) > 0 {
		t.Fatalf("request: %v", err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	val, _ := asn1.Marshal(nonce)
	type extension struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}
	type tbsRequest struct {
		List       []asn1.RawValue
		Extensions []extension `asn1:"explicit,tag:2"`
	}
	out, err := asn1.Marshal(struct{ TBS tbsRequest }{tbsRequest{List: r.TBS.List,
		Extensions: []extension{{ID: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: val}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
