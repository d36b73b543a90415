package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

// setWAL puts the database file in WAL mode, where readers and the writer do
// not block each other. The mode is stored in the file, so this is done once
// per Open, not per connection. Switching needs an exclusive lock, and SQLite
// answers SQLITE_BUSY at once rather than wait for it with the busy handler:
// if another process is opening the same new file at the same moment, this
// waits here instead, for as long as the busy timeout.
func setWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeoutMS * time.Millisecond)
	for {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil {
			if mode != "wal" {
				return fmt.Errorf("journal mode is %q, not wal: is the file on a file system without shared memory?", mode)
			}
			return nil
		}
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().After(deadline) {
			return fmt.Errorf("set WAL mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set WAL mode: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
