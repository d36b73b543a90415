package main

// The database decorator: every storage.Store method, timed. The method
// bodies below are mechanical (written from the interface by a throwaway
// generator); storage.Store is embedded, so a method added to the interface
// later still passes through, untimed, until it is added here.

import (
	"context"
	"errors"
	"time"

	"github.com/anvil-pki/anvil/metrics"
	"github.com/anvil-pki/anvil/storage"
)

// instrumentedStore times each storage operation by name, counts the ones that
// fail, and counts orders as they are created and change state.
type instrumentedStore struct {
	storage.Store
	m *metrics.Metrics
}

// instrumentStore wraps s. The operator's queries (storage.Admin) pass
// through untimed, so that a consumer that asks the store for them (the CRL
// publisher looks for operators' CRL requests) still finds them.
func instrumentStore(s storage.Store, m *metrics.Metrics) storage.Store {
	is := &instrumentedStore{Store: s, m: m}
	if a, ok := s.(storage.Admin); ok {
		return instrumentedAdminStore{is, a}
	}
	return is
}

// instrumentedAdminStore is an instrumentedStore that keeps the wrapped
// store's storage.Admin methods.
type instrumentedAdminStore struct {
	*instrumentedStore
	storage.Admin
}

func (s *instrumentedStore) observe(op string, start time.Time, err error) {
	s.m.DBDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	// Not found and conflicts are the store's answers (a lost race, a
	// nonce used twice), not failures of the database.
	if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict) {
		s.m.DBErrors.WithLabelValues(op).Inc()
	}
}

// orderChanged counts the order state changes a finalize makes: ready (stored
// as pending) to processing is a finalize accepted; processing to valid,
// invalid or back to pending is its outcome.
func (s *instrumentedStore) orderChanged(from, to string) {
	switch {
	case from == "pending" && to == "processing":
		s.m.OrderFinalizesStarted.Inc()
	case from == "processing" && to == "valid":
		s.m.OrdersFinalized.WithLabelValues("valid").Inc()
	case from == "processing" && to == "invalid":
		s.m.OrdersFinalized.WithLabelValues("invalid").Inc()
	case from == "processing" && to == "pending":
		s.m.OrdersFinalized.WithLabelValues("retry").Inc()
	}
}

func (s *instrumentedStore) RedeemNonce(ctx context.Context, nonce string, expires time.Time) error {
	start := time.Now()
	err := s.Store.RedeemNonce(ctx, nonce, expires)
	s.observe("RedeemNonce", start, err)
	return err
}

func (s *instrumentedStore) CreateAccount(ctx context.Context, a *storage.Account) error {
	start := time.Now()
	err := s.Store.CreateAccount(ctx, a)
	s.observe("CreateAccount", start, err)
	return err
}

func (s *instrumentedStore) GetAccount(ctx context.Context, id string) (*storage.Account, error) {
	start := time.Now()
	r0, err := s.Store.GetAccount(ctx, id)
	s.observe("GetAccount", start, err)
	return r0, err
}

func (s *instrumentedStore) GetAccountByKeyID(ctx context.Context, keyID string) (*storage.Account, error) {
	start := time.Now()
	r0, err := s.Store.GetAccountByKeyID(ctx, keyID)
	s.observe("GetAccountByKeyID", start, err)
	return r0, err
}

func (s *instrumentedStore) UpdateAccount(ctx context.Context, a *storage.Account, fromStatus string) error {
	start := time.Now()
	err := s.Store.UpdateAccount(ctx, a, fromStatus)
	s.observe("UpdateAccount", start, err)
	return err
}

func (s *instrumentedStore) RolloverAccountKey(ctx context.Context, id string, oldKeyID string, newKeyID string, newKey []byte) error {
	start := time.Now()
	err := s.Store.RolloverAccountKey(ctx, id, oldKeyID, newKeyID, newKey)
	s.observe("RolloverAccountKey", start, err)
	return err
}

func (s *instrumentedStore) CountAccountsByIP(ctx context.Context, ip string, since time.Time) (int, error) {
	start := time.Now()
	r0, err := s.Store.CountAccountsByIP(ctx, ip, since)
	s.observe("CountAccountsByIP", start, err)
	return r0, err
}

func (s *instrumentedStore) CreateOrder(ctx context.Context, o *storage.Order, newAuthzs []*storage.Authorization) error {
	start := time.Now()
	err := s.Store.CreateOrder(ctx, o, newAuthzs)
	s.observe("CreateOrder", start, err)
	if err == nil {
		s.m.OrdersCreated.Inc()
	}
	return err
}

func (s *instrumentedStore) GetOrder(ctx context.Context, id string) (*storage.Order, error) {
	start := time.Now()
	r0, err := s.Store.GetOrder(ctx, id)
	s.observe("GetOrder", start, err)
	return r0, err
}

func (s *instrumentedStore) UpdateOrder(ctx context.Context, o *storage.Order, fromStatus string) error {
	start := time.Now()
	err := s.Store.UpdateOrder(ctx, o, fromStatus)
	s.observe("UpdateOrder", start, err)
	if err == nil {
		s.orderChanged(fromStatus, o.Status)
	}
	return err
}

func (s *instrumentedStore) ListOrderIDs(ctx context.Context, accountID string, cursor string, limit int) ([]string, string, error) {
	start := time.Now()
	r0, r1, err := s.Store.ListOrderIDs(ctx, accountID, cursor, limit)
	s.observe("ListOrderIDs", start, err)
	return r0, r1, err
}

func (s *instrumentedStore) CountOrders(ctx context.Context, accountID string, since time.Time) (int, error) {
	start := time.Now()
	r0, err := s.Store.CountOrders(ctx, accountID, since)
	s.observe("CountOrders", start, err)
	return r0, err
}

func (s *instrumentedStore) OrdersReplacing(ctx context.Context, certID string) ([]*storage.Order, error) {
	start := time.Now()
	r0, err := s.Store.OrdersReplacing(ctx, certID)
	s.observe("OrdersReplacing", start, err)
	return r0, err
}

func (s *instrumentedStore) ClaimOrders(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Order, error) {
	start := time.Now()
	r0, err := s.Store.ClaimOrders(ctx, now, lease, limit)
	s.observe("ClaimOrders", start, err)
	return r0, err
}

func (s *instrumentedStore) CreateAuthorization(ctx context.Context, a *storage.Authorization) error {
	start := time.Now()
	err := s.Store.CreateAuthorization(ctx, a)
	s.observe("CreateAuthorization", start, err)
	return err
}

func (s *instrumentedStore) GetAuthorization(ctx context.Context, id string) (*storage.Authorization, error) {
	start := time.Now()
	r0, err := s.Store.GetAuthorization(ctx, id)
	s.observe("GetAuthorization", start, err)
	return r0, err
}

func (s *instrumentedStore) GetAuthorizations(ctx context.Context, ids []string) ([]*storage.Authorization, error) {
	start := time.Now()
	r0, err := s.Store.GetAuthorizations(ctx, ids)
	s.observe("GetAuthorizations", start, err)
	return r0, err
}

func (s *instrumentedStore) FindValidAuthorization(ctx context.Context, accountID string, ident storage.Identifier, wildcard bool, validUntil time.Time) (*storage.Authorization, error) {
	start := time.Now()
	r0, err := s.Store.FindValidAuthorization(ctx, accountID, ident, wildcard, validUntil)
	s.observe("FindValidAuthorization", start, err)
	return r0, err
}

func (s *instrumentedStore) UpdateAuthorization(ctx context.Context, a *storage.Authorization, fromStatus string) error {
	start := time.Now()
	err := s.Store.UpdateAuthorization(ctx, a, fromStatus)
	s.observe("UpdateAuthorization", start, err)
	return err
}

func (s *instrumentedStore) CountFailedAuthorizations(ctx context.Context, ident storage.Identifier, since time.Time) (int, error) {
	start := time.Now()
	r0, err := s.Store.CountFailedAuthorizations(ctx, ident, since)
	s.observe("CountFailedAuthorizations", start, err)
	return r0, err
}

func (s *instrumentedStore) GetChallenge(ctx context.Context, id string) (*storage.Challenge, error) {
	start := time.Now()
	r0, err := s.Store.GetChallenge(ctx, id)
	s.observe("GetChallenge", start, err)
	return r0, err
}

func (s *instrumentedStore) UpdateChallenge(ctx context.Context, c *storage.Challenge, fromStatus string) error {
	start := time.Now()
	err := s.Store.UpdateChallenge(ctx, c, fromStatus)
	s.observe("UpdateChallenge", start, err)
	return err
}

func (s *instrumentedStore) RecordValidation(ctx context.Context, c *storage.Challenge, fromChallenge string, a *storage.Authorization, fromAuthz string) error {
	start := time.Now()
	err := s.Store.RecordValidation(ctx, c, fromChallenge, a, fromAuthz)
	s.observe("RecordValidation", start, err)
	return err
}

func (s *instrumentedStore) ClaimChallenges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*storage.Challenge, error) {
	start := time.Now()
	r0, err := s.Store.ClaimChallenges(ctx, now, lease, limit)
	s.observe("ClaimChallenges", start, err)
	return r0, err
}

func (s *instrumentedStore) ReserveSerial(ctx context.Context, c *storage.Certificate) error {
	start := time.Now()
	err := s.Store.ReserveSerial(ctx, c)
	s.observe("ReserveSerial", start, err)
	return err
}

func (s *instrumentedStore) RecordLintCertificate(ctx context.Context, serial string, lintDER []byte) error {
	start := time.Now()
	err := s.Store.RecordLintCertificate(ctx, serial, lintDER)
	s.observe("RecordLintCertificate", start, err)
	return err
}

func (s *instrumentedStore) RecordIssuedCertificate(ctx context.Context, serial string, der []byte) error {
	start := time.Now()
	err := s.Store.RecordIssuedCertificate(ctx, serial, der)
	s.observe("RecordIssuedCertificate", start, err)
	return err
}

func (s *instrumentedStore) GetCertificate(ctx context.Context, serial string) (*storage.Certificate, error) {
	start := time.Now()
	r0, err := s.Store.GetCertificate(ctx, serial)
	s.observe("GetCertificate", start, err)
	return r0, err
}

func (s *instrumentedStore) CertificatesForOrder(ctx context.Context, orderID string) ([]*storage.Certificate, error) {
	start := time.Now()
	r0, err := s.Store.CertificatesForOrder(ctx, orderID)
	s.observe("CertificatesForOrder", start, err)
	return r0, err
}

func (s *instrumentedStore) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason int) error {
	start := time.Now()
	err := s.Store.RevokeCertificate(ctx, serial, at, reason)
	s.observe("RevokeCertificate", start, err)
	return err
}

func (s *instrumentedStore) PutCRL(ctx context.Context, c *storage.CRL) error {
	start := time.Now()
	err := s.Store.PutCRL(ctx, c)
	s.observe("PutCRL", start, err)
	return err
}

func (s *instrumentedStore) CreateEABKey(ctx context.Context, k *storage.EABKey) error {
	start := time.Now()
	err := s.Store.CreateEABKey(ctx, k)
	s.observe("CreateEABKey", start, err)
	return err
}

func (s *instrumentedStore) GetEABKey(ctx context.Context, id string) (*storage.EABKey, error) {
	start := time.Now()
	r0, err := s.Store.GetEABKey(ctx, id)
	s.observe("GetEABKey", start, err)
	return r0, err
}

func (s *instrumentedStore) ListEABKeys(ctx context.Context) ([]*storage.EABKey, error) {
	start := time.Now()
	r0, err := s.Store.ListEABKeys(ctx)
	s.observe("ListEABKeys", start, err)
	return r0, err
}

func (s *instrumentedStore) RevokeEABKey(ctx context.Context, id string) error {
	start := time.Now()
	err := s.Store.RevokeEABKey(ctx, id)
	s.observe("RevokeEABKey", start, err)
	return err
}

func (s *instrumentedStore) BindEABKey(ctx context.Context, id string, accountID string) error {
	start := time.Now()
	err := s.Store.BindEABKey(ctx, id, accountID)
	s.observe("BindEABKey", start, err)
	return err
}

func (s *instrumentedStore) TryLeaseAndCertificates(ctx context.Context, name, holder string, now time.Time, ttl time.Duration, orderID string) (bool, []*storage.Certificate, error) {
	start := time.Now()
	r0, r1, err := s.Store.TryLeaseAndCertificates(ctx, name, holder, now, ttl, orderID)
	s.observe("TryLeaseAndCertificates", start, err)
	return r0, r1, err
}

func (s *instrumentedStore) TryLease(ctx context.Context, name string, holder string, now time.Time, ttl time.Duration) (bool, error) {
	start := time.Now()
	r0, err := s.Store.TryLease(ctx, name, holder, now, ttl)
	s.observe("TryLease", start, err)
	return r0, err
}

func (s *instrumentedStore) DeleteExpired(ctx context.Context, cutoff time.Time) (int64, error) {
	start := time.Now()
	r0, err := s.Store.DeleteExpired(ctx, cutoff)
	s.observe("DeleteExpired", start, err)
	return r0, err
}

// The ledger outcomes and lease hand-overs of crash recovery.

func (s *instrumentedStore) AbandonIntent(ctx context.Context, serial string, at time.Time) error {
	start := time.Now()
	err := s.Store.AbandonIntent(ctx, serial, at)
	s.observe("AbandonIntent", start, err)
	return err
}

func (s *instrumentedStore) AbandonIntents(ctx context.Context, holder string, at time.Time) (int64, error) {
	start := time.Now()
	v, err := s.Store.AbandonIntents(ctx, holder, at)
	s.observe("AbandonIntents", start, err)
	return v, err
}

func (s *instrumentedStore) AbandonOrphanedIntents(ctx context.Context, leasePrefix string, at time.Time) (int64, error) {
	start := time.Now()
	v, err := s.Store.AbandonOrphanedIntents(ctx, leasePrefix, at)
	s.observe("AbandonOrphanedIntents", start, err)
	return v, err
}

func (s *instrumentedStore) LedgerCounts(ctx context.Context) ([]storage.LedgerCount, error) {
	start := time.Now()
	v, err := s.Store.LedgerCounts(ctx)
	s.observe("LedgerCounts", start, err)
	return v, err
}

func (s *instrumentedStore) OpenIntents(ctx context.Context, leasePrefix string, now time.Time) ([]storage.OpenIntent, error) {
	start := time.Now()
	v, err := s.Store.OpenIntents(ctx, leasePrefix, now)
	s.observe("OpenIntents", start, err)
	return v, err
}

func (s *instrumentedStore) RecordNotSigned(ctx context.Context, serial, reason string) error {
	start := time.Now()
	err := s.Store.RecordNotSigned(ctx, serial, reason)
	s.observe("RecordNotSigned", start, err)
	return err
}

func (s *instrumentedStore) ReleaseAllLeases(ctx context.Context) (int64, error) {
	start := time.Now()
	v, err := s.Store.ReleaseAllLeases(ctx)
	s.observe("ReleaseAllLeases", start, err)
	return v, err
}

func (s *instrumentedStore) ReleaseLease(ctx context.Context, name, holder string) error {
	start := time.Now()
	err := s.Store.ReleaseLease(ctx, name, holder)
	s.observe("ReleaseLease", start, err)
	return err
}

func (s *instrumentedStore) ReleaseLeasesOf(ctx context.Context, holder string) (int64, error) {
	start := time.Now()
	v, err := s.Store.ReleaseLeasesOf(ctx, holder)
	s.observe("ReleaseLeasesOf", start, err)
	return v, err
}

// SetLeaseHolder names this process in the leases it takes; no database work.
func (s *instrumentedStore) SetLeaseHolder(holder string) { s.Store.SetLeaseHolder(holder) }

func (s *instrumentedStore) FindValidAuthorizations(ctx context.Context, accountID string, lookups []storage.AuthzLookup, validUntil time.Time) ([]*storage.Authorization, error) {
	start := time.Now()
	r0, err := s.Store.FindValidAuthorizations(ctx, accountID, lookups, validUntil)
	s.observe("FindValidAuthorizations", start, err)
	return r0, err
}

func (s *instrumentedStore) CountFailedAuthorizationsEach(ctx context.Context, idents []storage.Identifier, since time.Time) ([]int, error) {
	start := time.Now()
	r0, err := s.Store.CountFailedAuthorizationsEach(ctx, idents, since)
	s.observe("CountFailedAuthorizationsEach", start, err)
	return r0, err
}

// The CRL shard methods.
func (s *instrumentedStore) ListRevokedShard(ctx context.Context, issuer string, shard int, expiresAfter time.Time) ([]storage.Revoked, error) {
	start := time.Now()
	r0, err := s.Store.ListRevokedShard(ctx, issuer, shard, expiresAfter)
	s.observe("ListRevokedShard", start, err)
	return r0, err
}

func (s *instrumentedStore) RevocationsByShard(ctx context.Context, issuer string) ([]storage.ShardRevocations, error) {
	start := time.Now()
	r0, err := s.Store.RevocationsByShard(ctx, issuer)
	s.observe("RevocationsByShard", start, err)
	return r0, err
}

func (s *instrumentedStore) GetCRLShard(ctx context.Context, issuer string, shard int) (*storage.CRL, error) {
	start := time.Now()
	r0, err := s.Store.GetCRLShard(ctx, issuer, shard)
	s.observe("GetCRLShard", start, err)
	return r0, err
}

func (s *instrumentedStore) CRLHeads(ctx context.Context, issuer string) ([]storage.CRL, error) {
	start := time.Now()
	r0, err := s.Store.CRLHeads(ctx, issuer)
	s.observe("CRLHeads", start, err)
	return r0, err
}
