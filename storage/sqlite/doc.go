// Package sqlite is the embedded storage.Store: one SQLite file, no other
// service, the default for `anvil serve` on a single node.
//
// It owns the SQLite schema and its migrations, and the connection discipline
// that keeps concurrent goroutines from ever seeing SQLITE_BUSY: all writes go
// through one goroutine on one connection whose transactions begin IMMEDIATE,
// so writers queue in Go rather than fail in SQLite, and writes that queue
// together commit together, each still atomic on its own (group.go); reads
// use a separate pool that, in WAL mode, never waits for the writer. Every race that storage.Store calls
// out is decided inside one statement or one transaction on that connection.
//
// Because this process is the only one that writes accounts, accounts read by
// ID are cached in memory and dropped on every account write
// (accountcache.go).
//
// It must never be shared by two processes as a way to scale out (use package
// postgres for several front ends), never hold a write transaction open across
// anything but SQL, and never interpret what it stores beyond the interface's
// rules.
package sqlite
