package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"

	// The driver registers itself as "sqlite3".
	_ "github.com/mattn/go-sqlite3"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

// Store is a storage.Store in one SQLite file.
type Store struct {
	// w is the single writer connection: SQLite admits one writer at a time,
	// and queueing for it in database/sql is cheaper than busy-waiting in SQLite.
	w *sql.DB
	// r is the reader pool. In WAL mode readers see the last commit and
	// neither wait for nor block the writer.
	r *sql.DB
	// deleteBatch bounds the rows one DeleteExpired transaction removes, so
	// that a large cleanup never holds the write lock for long.
	deleteBatch int
	// c runs every write, grouping concurrent ones into one transaction on w.
	c *committer
	// accounts caches GetAccount; account writes keep it exact.
	accounts *accountCache
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

// busyTimeoutMS is how long a connection waits for another process's lock
// before SQLITE_BUSY. Within this process writers never contend (one
// connection); this covers `anvil admin` commands run beside a server.
const busyTimeoutMS = 10000

// Open opens (creating if need be) the SQLite database at path and brings its
// schema up to date.
func Open(path string) (*Store, error) { return OpenDriver("sqlite3", path) }

// OpenDriver is Open through the database/sql driver registered as driver,
// which must be mattn/go-sqlite3's ("sqlite3") or wrap it: tests count the
// statements a store runs through such a wrapper.
func OpenDriver(driver, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: %q is not a plain file path", path)
	}
	common := url.Values{
		"_busy_timeout":    {fmt.Sprint(busyTimeoutMS)},
		"_foreign_keys":    {"on"},
		"_synchronous":     {"NORMAL"},
		"_stmt_cache_size": {"64"},
	}

	wq := cloneValues(common)
	// BEGIN IMMEDIATE takes the write lock at the start, so a transaction
	// never fails half-way on upgrading a read lock to a write lock.
	wq.Set("_txlock", "immediate")
	w, err := sql.Open(driver, path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	// Set up the file before the readers open, so they find WAL mode and the
	// schema.
	ctx := context.Background()
	if err := setWAL(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	// Statement journals (the savepoints of a group commit's writes) stay in
	// memory instead of spilling to a temporary file in /var/tmp: measured, a
	// 64 KiB file written and unlinked about every second certificate. The
	// writer pool is one connection that is never closed, so this holds for
	// every write; a reconnection after an error would only lose the speed-up.
	if _, err := w.ExecContext(ctx, `PRAGMA temp_store = MEMORY`); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %s: set temp_store: %w", path, err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}

	rq := cloneValues(common)
	rq.Set("_query_only", "on")
	r, err := sql.Open(driver, path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	if err := r.Ping(); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	return &Store{w: w, r: r, deleteBatch: 1000, c: newCommitter(w), accounts: newAccountCache()}, nil
}

// Close lets the writes under way finish and closes both pools.
func (s *Store) Close() error {
	s.c.close()
	return errors.Join(s.r.Close(), s.w.Close())
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// inTx runs f as one atomic write, in the next group commit: if f fails,
// nothing it did remains. f must use the ctx it is given, not its caller's.
func (s *Store) inTx(ctx context.Context, f func(ctx context.Context, tx *sql.Tx) error) error {
	return s.c.do(ctx, false, f)
}

// exec runs one write statement in the next group commit.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.c.do(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// queryWrite runs one write statement with a RETURNING clause in the next
// group commit, scanning the rows it returns with scan.
func queryWrite[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	// Not oneStatement: the UPDATE's changes are in before the rows are
	// read, and a row that fails to scan must take them back.
	err := s.c.do(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		out, err = records.Collect(rows, scan)
		return err
	})
	return out, err
}
