package acme_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/sqlite"
)

// A newOrder's database work must not grow with its identifiers: the store
// calls it makes for 1, 10 and 100 identifiers are the same, both when every
// authorization is new and when every one is reused, with the rate limit
// that counts failed validations per name on.
func TestNewOrderStoreCallsDoNotGrowWithIdentifiers(t *testing.T) {
	names := func(prefix string, n int) []acme.Identifier {
		ids := make([]acme.Identifier, n)
		for i := range ids {
			ids[i] = acme.Identifier{Type: "dns", Value: fmt.Sprintf("%s%d.example.com", prefix, i)}
		}
		return ids
	}
	type calls struct{ fresh, reused map[string]int }
	got := map[int]calls{}
	for _, n := range []int{1, 10, 100} {
		// A subtest each: its token is closed before the next opens one
		// (SoftHSM2 reads its token directory once per initialization).
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ca, cs, acct := countingEnv(t)
			ctx := context.Background()

			cs.reset()
			o, err := ca.NewOrder(ctx, acct, acme.NewOrderRequest{Identifiers: names("n", n)})
			if err != nil {
				t.Fatalf("%d identifiers: %v", n, err)
			}
			fresh := cs.snapshot()

			// Validate every authorization, then order the same names again:
			// every authorization is reused.
			for _, id := range o.AuthzIDs {
				a, err := ca.Authorization(ctx, acct, id)
				if err != nil {
					t.Fatal(err)
				}
				if ch, _, err := ca.RespondChallenge(ctx, acct, a.Challenges[0].ID); err != nil || ch.Status != acme.StatusValid {
					t.Fatalf("challenge: %v %v", ch, err)
				}
			}
			cs.reset()
			again, err := ca.NewOrder(ctx, acct, acme.NewOrderRequest{Identifiers: names("n", n)})
			if err != nil {
				t.Fatal(err)
			}
			if again.Status != acme.StatusReady || len(again.AuthzIDs) != n || again.AuthzIDs[n-1] != o.AuthzIDs[n-1] {
				t.Fatalf("%d identifiers: the second order is %s with %d authorizations, want ready with the first's %d", n, again.Status, len(again.AuthzIDs), n)
			}
			got[n] = calls{fresh, cs.snapshot()}
		})
	}
	for _, n := range []int{10, 100} {
		if !maps.Equal(got[n].fresh, got[1].fresh) {
			t.Errorf("new authorizations: store calls for %d identifiers %v, for 1 %v", n, got[n].fresh, got[1].fresh)
		}
		if !maps.Equal(got[n].reused, got[1].reused) {
			t.Errorf("reused authorizations: store calls for %d identifiers %v, for 1 %v", n, got[n].reused, got[1].reused)
		}
	}
	t.Logf("store calls of one newOrder: %v new, %v reused", got[100].fresh, got[100].reused)
}

// countingEnv is a CA on SQLite whose store counts its calls, with reuse and
// every rate limit that reads the store on, and an account.
func countingEnv(t *testing.T) (*acme.Core, *countingStore, *storage.Account) {
	t.Helper()
	store, err := sqlite.Open(t.TempDir() + "/anvil.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cs := &countingStore{inner: store, calls: map[string]int{}}
	ca, acct := envOn(t, store, cs)
	return ca, cs, acct
}

// countingStore counts the calls of every storage.Store method. It does not
// embed the interface: a method added to it fails to compile here until it
// is counted too.
type countingStore struct {
	inner storage.Store
	mu    sync.Mutex
	calls map[string]int
}

var _ storage.Store = (*countingStore)(nil)

func (s *countingStore) count(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *countingStore) reset() {
	s.mu.Lock()
	s.calls = map[string]int{}
	s.mu.Unlock()
}

func (s *countingStore) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// The methods below are mechanical, one per storage.Store method.

func (s *countingStore) AbandonIntent(ctx context.Context, a1 string, a2 time.Time) error {
	s.count("AbandonIntent")
	return s.inner.AbandonIntent(ctx, a1, a2)
}

func (s *countingStore) AbandonIntents(ctx context.Context, a1 string, a2 time.Time) (int64, error) {
	s.count("AbandonIntents")
	return s.inner.AbandonIntents(ctx, a1, a2)
}

func (s *countingStore) AbandonOrphanedIntents(ctx context.Context, a1 string, a2 time.Time) (int64, error) {
	s.count("AbandonOrphanedIntents")
	return s.inner.AbandonOrphanedIntents(ctx, a1, a2)
}

func (s *countingStore) BindEABKey(ctx context.Context, a1 string, a2 string) error {
	s.count("BindEABKey")
	return s.inner.BindEABKey(ctx, a1, a2)
}

func (s *countingStore) CertificatesForOrder(ctx context.Context, a1 string) ([]*storage.Certificate, error) {
	s.count("CertificatesForOrder")
	return s.inner.CertificatesForOrder(ctx, a1)
}

func (s *countingStore) ClaimChallenges(ctx context.Context, a1 time.Time, a2 time.Duration, a3 int) ([]*storage.Challenge, error) {
	s.count("ClaimChallenges")
	return s.inner.ClaimChallenges(ctx, a1, a2, a3)
}

func (s *countingStore) ClaimOrders(ctx context.Context, a1 time.Time, a2 time.Duration, a3 int) ([]*storage.Order, error) {
	s.count("ClaimOrders")
	return s.inner.ClaimOrders(ctx, a1, a2, a3)
}

func (s *countingStore) Close() error {
	s.count("Close")
	return s.inner.Close()
}

func (s *countingStore) CountAccountsByIP(ctx context.Context, a1 string, a2 time.Time) (int, error) {
	s.count("CountAccountsByIP")
	return s.inner.CountAccountsByIP(ctx, a1, a2)
}

func (s *countingStore) CountFailedAuthorizations(ctx context.Context, a1 storage.Identifier, a2 time.Time) (int, error) {
	s.count("CountFailedAuthorizations")
	return s.inner.CountFailedAuthorizations(ctx, a1, a2)
}

func (s *countingStore) CountFailedAuthorizationsEach(ctx context.Context, a1 []storage.Identifier, a2 time.Time) ([]int, error) {
	s.count("CountFailedAuthorizationsEach")
	return s.inner.CountFailedAuthorizationsEach(ctx, a1, a2)
}

func (s *countingStore) CountOrders(ctx context.Context, a1 string, a2 time.Time) (int, error) {
	s.count("CountOrders")
	return s.inner.CountOrders(ctx, a1, a2)
}

func (s *countingStore) CreateAccount(ctx context.Context, a1 *storage.Account) error {
	s.count("CreateAccount")
	return s.inner.CreateAccount(ctx, a1)
}

func (s *countingStore) CreateAuthorization(ctx context.Context, a1 *storage.Authorization) error {
	s.count("CreateAuthorization")
	return s.inner.CreateAuthorization(ctx, a1)
}

func (s *countingStore) CreateEABKey(ctx context.Context, a1 *storage.EABKey) error {
	s.count("CreateEABKey")
	return s.inner.CreateEABKey(ctx, a1)
}

func (s *countingStore) CreateOrder(ctx context.Context, a1 *storage.Order, a2 []*storage.Authorization) error {
	s.count("CreateOrder")
	return s.inner.CreateOrder(ctx, a1, a2)
}

func (s *countingStore) DeleteExpired(ctx context.Context, a1 time.Time) (int64, error) {
	s.count("DeleteExpired")
	return s.inner.DeleteExpired(ctx, a1)
}

func (s *countingStore) FindValidAuthorization(ctx context.Context, a1 string, a2 storage.Identifier, a3 bool, a4 time.Time) (*storage.Authorization, error) {
	s.count("FindValidAuthorization")
	return s.inner.FindValidAuthorization(ctx, a1, a2, a3, a4)
}

func (s *countingStore) FindValidAuthorizations(ctx context.Context, a1 string, a2 []storage.AuthzLookup, a3 time.Time) ([]*storage.Authorization, error) {
	s.count("FindValidAuthorizations")
	return s.inner.FindValidAuthorizations(ctx, a1, a2, a3)
}

func (s *countingStore) GetAccount(ctx context.Context, a1 string) (*storage.Account, error) {
	s.count("GetAccount")
	return s.inner.GetAccount(ctx, a1)
}

func (s *countingStore) GetAccountByKeyID(ctx context.Context, a1 string) (*storage.Account, error) {
	s.count("GetAccountByKeyID")
	return s.inner.GetAccountByKeyID(ctx, a1)
}

func (s *countingStore) GetAuthorization(ctx context.Context, a1 string) (*storage.Authorization, error) {
	s.count("GetAuthorization")
	return s.inner.GetAuthorization(ctx, a1)
}

func (s *countingStore) GetAuthorizations(ctx context.Context, a1 []string) ([]*storage.Authorization, error) {
	s.count("GetAuthorizations")
	return s.inner.GetAuthorizations(ctx, a1)
}

func (s *countingStore) GetCertificate(ctx context.Context, a1 string) (*storage.Certificate, error) {
	s.count("GetCertificate")
	return s.inner.GetCertificate(ctx, a1)
}

func (s *countingStore) GetChallenge(ctx context.Context, a1 string) (*storage.Challenge, error) {
	s.count("GetChallenge")
	return s.inner.GetChallenge(ctx, a1)
}

func (s *countingStore) GetEABKey(ctx context.Context, a1 string) (*storage.EABKey, error) {
	s.count("GetEABKey")
	return s.inner.GetEABKey(ctx, a1)
}

func (s *countingStore) GetOrder(ctx context.Context, a1 string) (*storage.Order, error) {
	s.count("GetOrder")
	return s.inner.GetOrder(ctx, a1)
}

func (s *countingStore) LedgerCounts(ctx context.Context) ([]storage.LedgerCount, error) {
	s.count("LedgerCounts")
	return s.inner.LedgerCounts(ctx)
}

func (s *countingStore) ListEABKeys(ctx context.Context) ([]*storage.EABKey, error) {
	s.count("ListEABKeys")
	return s.inner.ListEABKeys(ctx)
}

func (s *countingStore) ListOrderIDs(ctx context.Context, a1 string, a2 string, a3 int) ([]string, string, error) {
	s.count("ListOrderIDs")
	return s.inner.ListOrderIDs(ctx, a1, a2, a3)
}

func (s *countingStore) OpenIntents(ctx context.Context, a1 string, a2 time.Time) ([]storage.OpenIntent, error) {
	s.count("OpenIntents")
	return s.inner.OpenIntents(ctx, a1, a2)
}

func (s *countingStore) OrdersReplacing(ctx context.Context, a1 string) ([]*storage.Order, error) {
	s.count("OrdersReplacing")
	return s.inner.OrdersReplacing(ctx, a1)
}

func (s *countingStore) PutCRL(ctx context.Context, a1 *storage.CRL) error {
	s.count("PutCRL")
	return s.inner.PutCRL(ctx, a1)
}

func (s *countingStore) RecordIssuedCertificate(ctx context.Context, a1 string, a2 []uint8) error {
	s.count("RecordIssuedCertificate")
	return s.inner.RecordIssuedCertificate(ctx, a1, a2)
}

func (s *countingStore) RecordLintCertificate(ctx context.Context, a1 string, a2 []uint8) error {
	s.count("RecordLintCertificate")
	return s.inner.RecordLintCertificate(ctx, a1, a2)
}

func (s *countingStore) RecordNotSigned(ctx context.Context, a1 string, a2 string) error {
	s.count("RecordNotSigned")
	return s.inner.RecordNotSigned(ctx, a1, a2)
}

func (s *countingStore) RecordValidation(ctx context.Context, a1 *storage.Challenge, a2 string, a3 *storage.Authorization, a4 string) error {
	s.count("RecordValidation")
	return s.inner.RecordValidation(ctx, a1, a2, a3, a4)
}

func (s *countingStore) RedeemNonce(ctx context.Context, a1 string, a2 time.Time) error {
	s.count("RedeemNonce")
	return s.inner.RedeemNonce(ctx, a1, a2)
}

func (s *countingStore) ReleaseAllLeases(ctx context.Context) (int64, error) {
	s.count("ReleaseAllLeases")
	return s.inner.ReleaseAllLeases(ctx)
}

func (s *countingStore) ReleaseLease(ctx context.Context, a1 string, a2 string) error {
	s.count("ReleaseLease")
	return s.inner.ReleaseLease(ctx, a1, a2)
}

func (s *countingStore) ReleaseLeasesOf(ctx context.Context, a1 string) (int64, error) {
	s.count("ReleaseLeasesOf")
	return s.inner.ReleaseLeasesOf(ctx, a1)
}

func (s *countingStore) ReserveSerial(ctx context.Context, a1 *storage.Certificate) error {
	s.count("ReserveSerial")
	return s.inner.ReserveSerial(ctx, a1)
}

func (s *countingStore) RevokeCertificate(ctx context.Context, a1 string, a2 time.Time, a3 int) error {
	s.count("RevokeCertificate")
	return s.inner.RevokeCertificate(ctx, a1, a2, a3)
}

func (s *countingStore) RevokeEABKey(ctx context.Context, a1 string) error {
	s.count("RevokeEABKey")
	return s.inner.RevokeEABKey(ctx, a1)
}

func (s *countingStore) RolloverAccountKey(ctx context.Context, a1 string, a2 string, a3 string, a4 []uint8) error {
	s.count("RolloverAccountKey")
	return s.inner.RolloverAccountKey(ctx, a1, a2, a3, a4)
}

func (s *countingStore) SetLeaseHolder(a0 string) {
	s.count("SetLeaseHolder")
	s.inner.SetLeaseHolder(a0)
}

func (s *countingStore) TryLeaseAndCertificates(ctx context.Context, a1, a2 string, a3 time.Time, a4 time.Duration, a5 string) (bool, []*storage.Certificate, error) {
	s.count("TryLeaseAndCertificates")
	return s.inner.TryLeaseAndCertificates(ctx, a1, a2, a3, a4, a5)
}

func (s *countingStore) TryLease(ctx context.Context, a1 string, a2 string, a3 time.Time, a4 time.Duration) (bool, error) {
	s.count("TryLease")
	return s.inner.TryLease(ctx, a1, a2, a3, a4)
}

func (s *countingStore) UpdateAccount(ctx context.Context, a1 *storage.Account, a2 string) error {
	s.count("UpdateAccount")
	return s.inner.UpdateAccount(ctx, a1, a2)
}

func (s *countingStore) UpdateAuthorization(ctx context.Context, a1 *storage.Authorization, a2 string) error {
	s.count("UpdateAuthorization")
	return s.inner.UpdateAuthorization(ctx, a1, a2)
}

func (s *countingStore) UpdateChallenge(ctx context.Context, a1 *storage.Challenge, a2 string) error {
	s.count("UpdateChallenge")
	return s.inner.UpdateChallenge(ctx, a1, a2)
}

func (s *countingStore) UpdateOrder(ctx context.Context, a1 *storage.Order, a2 string) error {
	s.count("UpdateOrder")
	return s.inner.UpdateOrder(ctx, a1, a2)
}
