package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/anvil-pki/anvil/storage/internal/schema"
)

// migrations holds the schema, one file per version: NNNN_name.sql. A
// migration, once released, is never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// loadMigrations returns the embedded migrations in version order.
func loadMigrations() ([]schema.Migration, error) { return schema.Load(migrations, "migrations") }

// migrate brings the database up to the newest schema, each version in its
// own transaction with its row in schema_migrations, so a crash leaves the
// database at some whole version. Every step, even reading the version,
// runs in a write transaction (BEGIN IMMEDIATE on this connection): another
// process opening the same new file at the same moment then waits its turn
// and finds the work done, where a read upgraded to a write would fail with
// SQLITE_BUSY without waiting.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		applied, err := migrateOne(ctx, db, ms)
		if err != nil {
			return err
		}
		if applied == nil {
			return nil
		}
	}
}

// migrateOne applies the first pending migration and returns it, or nil if
// the schema is current.
func migrateOne(ctx context.Context, db *sql.DB, ms []schema.Migration) (*schema.Migration, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	)`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return nil, fmt.Errorf("migrate: read schema version: %w", err)
	}
	switch {
	case current > len(ms):
		return nil, fmt.Errorf("migrate: database schema version %d is newer than this binary knows (%d)", current, len(ms))
	case current == len(ms):
		return nil, tx.Commit()
	}
	m := &ms[current]
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return nil, fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.Version, m.Name); err != nil {
		return nil, fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("migration %s: commit: %w", m.Name, err)
	}
	return m, nil
}
