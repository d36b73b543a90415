package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockSQLiteServe takes the lock that keeps a second `anvil serve` off one
// SQLite database. On SQLite a server redeems nonces and caches accounts in
// its own memory, which is right only while it is the database's one server;
// `anvil admin` commands do not take it. The lock goes with the process.
func lockSQLiteServe(dbPath string) (release func(), err error) {
	name := dbPath + ".serve-lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("database.dsn: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("database.dsn: another anvil serve is using the SQLite database %s (it holds %s); "+
				"SQLite serves one process: use PostgreSQL for several front ends", dbPath, name)
		}
		return nil, fmt.Errorf("database.dsn: lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}
