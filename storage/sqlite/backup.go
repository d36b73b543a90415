package sqlite

import (
	"context"
	"fmt"
	"os"
)

// Backup writes a consistent copy of the database to path with VACUUM INTO:
// one read transaction, so it sees one committed state while the server goes
// on writing (WAL readers never block the writer), and the copy is a plain,
// compacted database file with no -wal beside it. path must not exist.
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup: %s exists; choose a new file", path)
	}
	if _, err := s.r.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	// The copy holds account keys and EAB MAC keys: no wider than the database.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}
