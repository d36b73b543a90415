package sqlite

import (
	"context"
	"fmt"
	"os"
)

// Backup writes a consistent copy of the database to path with VACUUM INTO:
// one read transaction, so it sees one committed state while a server goes on
// writing (WAL readers never block the writer), and the copy is a plain,
// compacted database file with no -wal beside it. path must not exist.
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup: %s exists; choose a new file", path)
	}
	// On the writer connection: the readers are opened read-only, and VACUUM
	// INTO writes its file. It reads one snapshot and takes no write lock, so
	// another process (anvil serve beside anvil admin backup) writes on.
	if _, err := s.w.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path) // a half-written copy must not pass for a backup
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	// The copy holds account keys and EAB MAC keys: no wider than the database.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}
