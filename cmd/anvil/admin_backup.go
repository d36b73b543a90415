package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/anvil-pki/anvil/storage/sqlite"
)

// adminBackup copies an SQLite database while the server runs. PostgreSQL
// has its own tools (pg_dump, or base backups with WAL archiving), which do
// this better than Anvil could: docs/backup.md.
func adminBackup(args []string, out io.Writer) error {
	fs, cfgPath, _ := adminFlagSet("backup")
	dest := fs.String("out", "", "the backup file to write (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dest == "" {
		return errors.New("--out is required")
	}
	s, err := openAdminSession(*cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	db, ok := s.store.(*sqlite.Store)
	if !ok {
		return fmt.Errorf("database.driver is %s: back it up with pg_dump (see docs/backup.md)", s.cfg.Database.Driver)
	}
	if err := db.Backup(context.Background(), *dest); err != nil {
		return err
	}
	counts, err := s.admin.Counts(context.Background(), s.now)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "backed up to %s: %d ledger entries, %d accounts.\n"+
		"Restore: stop anvil serve, remove the database file and its -wal and -shm files, copy the backup in its place, start.\n",
		*dest, sum(counts.Certificates), sum(counts.Accounts))
	return nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
