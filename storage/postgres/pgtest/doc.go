// Package pgtest runs a throwaway PostgreSQL cluster for tests: initdb into a
// temporary directory, a postmaster listening only on a Unix socket in that
// directory, fsync off. Each Start call gets a fresh database in it, so tests
// are isolated without paying for a cluster each.
//
// It owns the cluster's whole life: it finds the installed binaries, runs the
// server as an unprivileged user when the tests run as root (PostgreSQL
// refuses root), stops it and removes its directory when the test binary is
// done, and makes sure that a crashed test binary does not leave a server
// behind: the server gets a parent-death signal, and the next run sweeps
// directories whose owner is gone.
//
// It must never connect to, or depend on, a server it did not start, never
// listen on a network interface, and never skip: a missing PostgreSQL fails
// the test and says how to install it.
package pgtest
