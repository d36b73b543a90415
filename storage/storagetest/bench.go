package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// BenchmarkIssuanceFlow runs, b.N times over 16 goroutines, the reads and
// writes `anvil serve` makes for one certificate of one name (the order
// created with its authorization and three challenges, the challenge answered
// and validated, finalize, the ledger's three writes, the download), and
// reports the process's CPU per flow besides the wall time: on a busy server
// the CPU is what limits throughput.
func BenchmarkIssuanceFlow(b *testing.B, s storage.Store) {
	ctx := context.Background()
	acct := newAccount("bench-" + randomHex(4))
	if err := s.CreateAccount(ctx, acct); err != nil {
		b.Fatal(err)
	}
	lintDER, certDER := make([]byte, 1100), make([]byte, 1200)
	rand.Read(lintDER)
	rand.Read(certDER)
	b.SetParallelism(8)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := issuanceFlow(ctx, s, acct.ID, lintDER, certDER); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu_us/flow")
}

func issuanceFlow(ctx context.Context, s storage.Store, accountID string, lintDER, certDER []byte) error {
	id := randomHex(16)
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := newAuthz("authz-"+id, accountID, dns(id+".example.com"), "pending", now.Add(7*24*time.Hour))
	a.Challenges = append(a.Challenges, newChallenge(a.ID+"-alpn", a.ID, "tls-alpn-01"))
	o := newOrder("order-"+id, accountID, "pending", a)
	o.Expires = now.Add(7 * 24 * time.Hour)
	if err := s.CreateOrder(ctx, o, []*storage.Authorization{a}); err != nil {
		return err
	}
	if _, err := s.GetAuthorization(ctx, a.ID); err != nil {
		return err
	}
	ch, err := s.GetChallenge(ctx, a.Challenges[0].ID)
	if err != nil {
		return err
	}
	if _, err := s.GetAuthorization(ctx, a.ID); err != nil {
		return err
	}
	ch.Status, ch.LeaseUntil, ch.UpdatedAt = "processing", now.Add(time.Minute), now
	if err := s.UpdateChallenge(ctx, ch, "pending"); err != nil {
		return err
	}
	ch.Status, ch.Validated, ch.LeaseUntil, ch.Attempts = "valid", now, time.Time{}, 1
	a.Status, a.Expires, a.UpdatedAt = "valid", now.Add(30*24*time.Hour), now
	if err := s.RecordValidation(ctx, ch, "processing", a, "pending"); err != nil {
		return err
	}
	if _, err := s.FindValidAuthorization(ctx, accountID, a.Identifier, false, now); err != nil {
		return err
	}
	if _, err := s.GetOrder(ctx, o.ID); err != nil {
		return err
	}
	if _, err := s.GetAuthorizations(ctx, o.AuthzIDs); err != nil {
		return err
	}
	o.Status, o.CSR, o.LeaseUntil, o.UpdatedAt = "processing", []byte("csr"), now.Add(time.Minute), now
	if err := s.UpdateOrder(ctx, o, "pending"); err != nil {
		return err
	}
	serial := "7f" + id
	if err := s.ReserveSerial(ctx, &storage.Certificate{Serial: serial, Issuer: "int", Profile: "tls", OrderID: o.ID,
		CreatedAt: now, Expires: now.Add(90 * 24 * time.Hour)}); err != nil {
		return err
	}
	if err := s.RecordLintCertificate(ctx, serial, lintDER); err != nil {
		return err
	}
	if err := s.RecordIssuedCertificate(ctx, serial, certDER); err != nil {
		return err
	}
	o.Status, o.CertSerial, o.LeaseUntil = "valid", serial, time.Time{}
	if err := s.UpdateOrder(ctx, o, "processing"); err != nil {
		return err
	}
	_, err = s.GetCertificate(ctx, serial)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
