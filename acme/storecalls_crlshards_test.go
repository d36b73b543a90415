package acme_test

import (
	"context"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// The CRL shard methods of storage.Store, counted like the others.

func (s *countingStore) ListRevokedShard(ctx context.Context, a1 string, a2 int, a3 time.Time) ([]storage.Revoked, error) {
	s.count("ListRevokedShard")
	return s.inner.ListRevokedShard(ctx, a1, a2, a3)
}

func (s *countingStore) RevocationsByShard(ctx context.Context, a1 string) ([]storage.ShardRevocations, error) {
	s.count("RevocationsByShard")
	return s.inner.RevocationsByShard(ctx, a1)
}

func (s *countingStore) GetCRLShard(ctx context.Context, a1 string, a2 int) (*storage.CRL, error) {
	s.count("GetCRLShard")
	return s.inner.GetCRLShard(ctx, a1, a2)
}

func (s *countingStore) CRLHeads(ctx context.Context, a1 string) ([]storage.CRL, error) {
	s.count("CRLHeads")
	return s.inner.CRLHeads(ctx, a1)
}
