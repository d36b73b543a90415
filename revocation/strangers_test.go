package revocation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/revocation"
)

// No HSM work for strangers: 10,000 OCSP requests for random serials this CA
// never issued, half of them with nonces, by GET and POST, SHA-1 and SHA-256
// CertIDs, from 16 clients at once, all get the fixed unsigned unauthorized
// response and cost no HSM signature at all (counted by the SoftHSM2 token
// itself), and leave nothing in the cache.
func TestOCSPStrangersCostNoSignature(t *testing.T) {
	e := newEnv(t, 1)
	before := e.tok.Stats().Signs
	const total = 10000
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{}
			for i := w; i < total; i += 16 {
				serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
				opts := &ocsp.RequestOptions{Hash: crypto.SHA1}
				if i%4 < 2 {
					opts.Hash = crypto.SHA256
				}
				req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, e.iss.Certificate(), opts)
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					nonce := make([]byte, 16)
					rand.Read(nonce)
					req = addNonce(t, req, nonce)
				}
				var resp *http.Response
				if i%3 == 0 {
					resp, err = client.Get(e.srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
				} else {
					resp, err = client.Post(e.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
				}
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Equal(body, ocsp.UnauthorizedErrorResponse) {
					mu.Lock()
					if bad == 0 {
						t.Logf("first wrong answer, request %d: %x", i, body[:min(len(body), 32)])
					}
					bad++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	signs := e.tok.Stats().Signs - before
	t.Logf("%d OCSP requests for random serials (half with nonces): %d HSM signatures, %d answered otherwise than unauthorized", total, signs, bad)
	if bad > 0 {
		t.Fatalf("%d of %d requests were not answered unauthorized", bad, total)
	}
	if signs != 0 || e.pub.Metrics().OCSPSignatures.Load() != 0 {
		t.Fatalf("%d HSM signatures (%d counted by the publisher) for requests about serials never issued, want 0", signs, e.pub.Metrics().OCSPSignatures.Load())
	}
	if n := revocation.CachedOCSPResponses(e.pub); n != 0 {
		t.Fatalf("%d responses cached for strangers, want 0", n)
	}
}

// A GET path longer than any real request is refused before it is decoded,
// and so is one that decodes to more than a POST may carry.
func TestOCSPGETPathIsBounded(t *testing.T) {
	e := newEnv(t, 1)
	for name, path := range map[string]string{
		"long escaped path": strings.Repeat("%41", 20000),
		"long base64":       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30}, 8000)),
	} {
		resp, err := http.Get(e.srv.URL + "/ocsp/" + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, ocsp.MalformedRequestErrorResponse) {
			t.Errorf("%s: got %x, want malformedRequest", name, b)
		}
	}
}

// The CRL is made on schedule (RefreshNow stands in for the schedule here),
// never because someone asked for it: downloads before the first CRL get 503
// and downloads after it are served from storage, neither with a signature.
func TestCRLDownloadsCostNoSignature(t *testing.T) {
	e := newEnv(t, 1)
	u := e.certs[0].CRLDistributionPoints[0]
	url := e.srv.URL + u[len("http://ca.example"):]
	get := func() int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	before := e.tok.Stats().Signs
	for range 200 {
		if code := get(); code != http.StatusServiceUnavailable {
			t.Fatalf("CRL before any was published: %d, want 503", code)
		}
	}
	if signs := e.tok.Stats().Signs - before; signs != 0 {
		t.Fatalf("%d HSM signatures for CRL downloads before the first CRL, want 0", signs)
	}
	e.pub.RefreshNow(context.Background())
	before = e.tok.Stats().Signs
	for range 500 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("CRL: %d", code)
		}
	}
	if signs := e.tok.Stats().Signs - before; signs != 0 {
		t.Fatalf("%d HSM signatures for 500 CRL downloads, want 0", signs)
	}
}
