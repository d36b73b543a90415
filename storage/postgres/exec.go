package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/anvil-pki/anvil/storage/internal/records"
)

// scanner is a pgx.Row or pgx.Rows.
type scanner = records.Scanner

// conditional runs a conditional write (an UPDATE whose WHERE checks the
// expected state) and, if it changed no row, says why: the row is missing
// (storage.ErrNotFound) or no longer as expected (storage.ErrConflict). Under
// READ COMMITTED a concurrent writer of the same row makes this statement
// wait and then re-check its WHERE against the committed row, so of many
// racers exactly one sees the expected state. The follow-up check runs only
// after a lost race, off the hot path.
func (s *Store) conditional(ctx context.Context, what, key, exists, query string, args ...any) error {
	return conditionalOn(ctx, s.pool, what, key, exists, query, args...)
}

// querier is the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conditionalOn is conditional on q, the pool or a transaction.
func conditionalOn(ctx context.Context, q querier, what, key, exists, query string, args ...any) error {
	tag, err := q.Exec(ctx, query, args...)
	if err != nil {
		return mapErr(err, fmt.Sprintf("update %s %q", what, key))
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var one int
	if err := q.QueryRow(ctx, exists, key).Scan(&one); err != nil {
		return notFound(err, what, key)
	}
	return records.Conflict("%s %q is not in the expected state", what, key)
}

// insertOnce runs an INSERT … ON CONFLICT DO NOTHING and reports a row that
// was not inserted as storage.ErrConflict. Lost races are routine (replayed
// nonces, a key registered twice), so they are not logged by the server as
// errors, as a failed unique constraint would be.
func (s *Store) insertOnce(ctx context.Context, what, query string, args ...any) error {
	tag, err := s.pool.Exec(ctx, query, args...)
	if err != nil {
		return mapErr(err, what)
	}
	if tag.RowsAffected() == 0 {
		return records.Conflict("%s: it exists already", what)
	}
	return nil
}

// queryAll runs a query on q (the pool or a transaction) and reads every row
// with scan; what names the query in errors.
func queryAll[T any](ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out, err := records.Collect(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
