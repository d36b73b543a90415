// Package postgres is the storage.Store for several front ends sharing one
// PostgreSQL database.
//
// It owns the PostgreSQL schema and its migrations (serialised across nodes
// by an advisory lock, so any number of nodes may start at once), and the SQL
// that decides every race in the database rather than in a process: inserts
// under unique constraints, updates conditional on the current status, and
// FOR UPDATE SKIP LOCKED claims so that two nodes never lease the same row.
//
// It must never keep state in process memory that another node would need,
// hold a transaction open across anything but SQL, or interpret what it
// stores beyond the interface's rules.
package postgres
