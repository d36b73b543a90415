package issuance_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/issuance/issuancetest"
)

// runConcurrently runs op b.N times spread over g goroutines and reports the
// rate under unit.
func runConcurrently(b *testing.B, g int, unit string, op func() error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

var goroutineCounts = []int{1, 2, 8}

// BenchmarkHSMSign measures raw signatures through hsm.Key on SoftHSM2.
func BenchmarkHSMSign(b *testing.B) {
	tok := issuancetest.Token(b)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048} {
		key, err := tok.GenerateKey(hsm.KeySpec{Label: string(alg), Algorithm: alg})
		if err != nil {
			b.Fatal(err)
		}
		hash := crypto.SHA256
		if alg == hsm.ECDSAP384 {
			hash = crypto.SHA384
		}
		h := hash.New()
		h.Write([]byte("anvil"))
		digest := h.Sum(nil)
		for _, g := range goroutineCounts {
			b.Run(fmt.Sprintf("%s/goroutines=%d", alg, g), func(b *testing.B) {
				runConcurrently(b, g, "sigs/s", func() error {
					_, err := key.SignContext(context.Background(), digest, hash)
					return err
				})
			})
		}
	}
}

// BenchmarkIssue measures certificates through the whole path: CSR checks,
// serial, build, lint, ledger (in memory), HSM sign, verify, record.
func BenchmarkIssue(b *testing.B) {
	tok := issuancetest.Token(b)
	root := issuancetest.NewRoot(b)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.RSA2048} {
		iss := issuancetest.Issuer(b, tok, root, alg)
		svc, err := issuance.NewService(issuance.ServiceConfig{
			Issuers:  []*issuance.Issuer{iss},
			Profiles: []*issuance.Profile{issuancetest.Profile(b, "tls", issuance.ProfileConfig{})},
			Ledger:   issuancetest.NewMemoryLedger(),
			Logger:   discardLogger(),
		})
		if err != nil {
			b.Fatal(err)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		names := []string{"www.example.com", "example.com"}
		csr := issuancetest.CSR(b, key, &x509.CertificateRequest{DNSNames: names})
		for _, g := range goroutineCounts {
			b.Run(fmt.Sprintf("issuer=%s/goroutines=%d", alg, g), func(b *testing.B) {
				runConcurrently(b, g, "certs/s", func() error {
					_, err := svc.Issue(context.Background(), issuance.Request{CSR: csr, DNSNames: names})
					return err
				})
			})
		}
	}
}

// BenchmarkLeafSignOnly is the floor the full path is compared with: build a
// leaf with x509.CreateCertificate and sign it with the SoftHSM2 P-256 key,
// with no checks, lint or records.
func BenchmarkLeafSignOnly(b *testing.B) {
	tok := issuancetest.Token(b)
	root := issuancetest.NewRoot(b)
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "p256", Algorithm: hsm.ECDSAP256})
	if err != nil {
		b.Fatal(err)
	}
	parent := root.Intermediate(b, "floor", key.Public())
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{DNSNames: []string{"example.com"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	for _, g := range goroutineCounts {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			runConcurrently(b, g, "certs/s", func() error {
				_, err := x509.CreateCertificate(rand.Reader, tmpl, parent, leafKey.Public(), key)
				return err
			})
		})
	}
}
