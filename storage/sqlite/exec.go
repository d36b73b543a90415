package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/anvil-pki/anvil/storage/internal/records"
)

// scanner is a *sql.Row or *sql.Rows.
type scanner = records.Scanner

// notFound turns sql.ErrNoRows into storage.ErrNotFound naming the record.
func notFound(err error, what, key string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return records.NotFound(what, key)
	}
	return fmt.Errorf("read %s %q: %w", what, key, err)
}

// conditional runs a conditional write (an UPDATE whose WHERE checks the
// expected state) and, if it changed no row, says why: the row is missing
// (storage.ErrNotFound) or is no longer as expected (storage.ErrConflict).
// The check runs only after a lost race, off the hot path, in the same
// transaction as the update.
func (s *Store) conditional(ctx context.Context, what, key, exists, query string, args ...any) error {
	return s.c.do(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		return conditionalTx(ctx, tx, what, key, exists, query, args...)
	})
}

// conditionalTx is conditional within a transaction.
func conditionalTx(ctx context.Context, tx *sql.Tx, what, key, exists, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return mapErr(err, fmt.Sprintf("update %s %q", what, key))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update %s %q: %w", what, key, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	if err := tx.QueryRowContext(ctx, exists, key).Scan(&one); err != nil {
		return notFound(err, what, key)
	}
	return records.Conflict("%s %q is not in the expected state", what, key)
}

// queryAll runs a query on q (the reader pool or a transaction) and reads
// every row with scan; what names the query in errors.
func queryAll[T any](ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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
