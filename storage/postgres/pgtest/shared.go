package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// The test binary's one cluster, started by the first Start.
var (
	mu      sync.Mutex
	shared  *Cluster
	failed  error // why the cluster could not start; every Start reports it
	stopped bool
)

// Start returns the DSN of a new, empty database in the test binary's cluster,
// starting the cluster on first use. It fails t, never skips it, if
// PostgreSQL is not installed or will not start.
//
// Stop the cluster at the end of the test binary with Main in TestMain. A
// binary that forgets, or crashes, still takes its server down with it; only
// the directory stays, for the next run to sweep.
func Start(t testing.TB) string {
	t.Helper()
	c, err := cluster()
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := c.CreateDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func cluster() (*Cluster, error) {
	mu.Lock()
	defer mu.Unlock()
	if stopped {
		return nil, fmt.Errorf("pgtest: Start called after Stop")
	}
	if shared == nil && failed == nil {
		shared, failed = StartCluster(context.Background())
	}
	return shared, failed
}

// Main runs the tests and then stops the cluster, if one was started:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// A failure to stop cleanly fails the run.
func Main(m *testing.M) int {
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stop stops the test binary's cluster and removes its directory.
func Stop() error {
	mu.Lock()
	defer mu.Unlock()
	stopped = true
	if shared == nil {
		return nil
	}
	err := shared.Stop()
	shared = nil
	return err
}
