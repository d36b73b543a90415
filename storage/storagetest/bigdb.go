package storagetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// SeedLedger writes n issued certificates of issuer through the ledger (the
// serial reserved, the lint certificate, the certificate: the three writes
// of an issuance), and revokes every revokeEvery-th, with workers writing
// at once. It returns the serials, the revoked ones at the indexes
// divisible by revokeEvery. It is for measuring a store at scale: the
// certificates are random bytes of a real certificate's size.
func SeedLedger(ctx context.Context, s storage.Store, issuer string, n, revokeEvery, workers int) ([]string, error) {
	return SeedLedgerShards(ctx, s, issuer, n, revokeEvery, 1, workers)
}

// SeedLedgerShards is SeedLedger with the certificates spread over crlShards
// CRL shards, serial mod crlShards as issuance does.
func SeedLedgerShards(ctx context.Context, s storage.Store, issuer string, n, revokeEvery, crlShards, workers int) ([]string, error) {
	crlShards = max(crlShards, 1)
	serials := make([]string, n)
	lintDER, certDER := make([]byte, 1100), make([]byte, 1200)
	rand.Read(lintDER)
	rand.Read(certDER)
	now := time.Now().UTC().Truncate(time.Microsecond)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				serial := fmt.Sprintf("7e%014x%s", i, randomHex(8))
				serials[i] = serial
				shard, _ := new(big.Int).SetString(serial, 16)
				err := s.ReserveSerial(ctx, &storage.Certificate{Serial: serial, Issuer: issuer, Profile: "tls",
					CreatedAt: now, Expires: now.Add(90 * 24 * time.Hour),
					CRLShard: int(shard.Mod(shard, big.NewInt(int64(crlShards))).Int64())})
				if err == nil {
					err = s.RecordLintCertificate(ctx, serial, lintDER)
				}
				if err == nil {
					err = s.RecordIssuedCertificate(ctx, serial, certDER)
				}
				if err == nil && revokeEvery > 0 && i%revokeEvery == 0 {
					err = s.RevokeCertificate(ctx, serial, now.Add(time.Duration(i)*time.Microsecond), 1)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("seed certificate %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return serials, first
}

// FlowLatencies runs the store's work of n complete issuances (order,
// validation, finalize, the ledger's writes, download; see
// BenchmarkIssuanceFlow) one after another, and returns their durations,
// sorted.
func FlowLatencies(ctx context.Context, s storage.Store, n int) ([]time.Duration, error) {
	acct := newAccount("bigdb-" + randomHex(4))
	if err := s.CreateAccount(ctx, acct); err != nil {
		return nil, err
	}
	lintDER, certDER := make([]byte, 1100), make([]byte, 1200)
	rand.Read(lintDER)
	rand.Read(certDER)
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		if err := issuanceFlow(ctx, s, acct.ID, lintDER, certDER); err != nil {
			return nil, err
		}
		out[i] = time.Since(t0)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
