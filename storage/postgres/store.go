package postgres

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/anvil-pki/anvil/storage"
)

// Store is a storage.Store in a PostgreSQL database, through a connection
// pool whose size the DSN sets (pool_max_conns). pgx prepares and caches each
// statement per connection, so the hot paths are one round trip each.
type Store struct {
	pool *pgxpool.Pool
	// deleteBatch bounds the rows one DeleteExpired transaction removes, so
	// that a large cleanup never holds many row locks for long.
	deleteBatch int
	// holder names this process in the leases it writes (SetLeaseHolder).
	holder atomic.Value
}

// SetLeaseHolder names this process in the leases it writes from now on.
func (s *Store) SetLeaseHolder(holder string) { s.holder.Store(holder) }

func (s *Store) leaseHolder() string {
	h, _ := s.holder.Load().(string)
	return h
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database named by dsn (a URL or key=value string, as
// libpq takes) and brings its schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{pool: pool, deleteBatch: 1000}, nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
