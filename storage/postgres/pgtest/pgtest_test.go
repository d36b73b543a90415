package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperEnv makes the test binary act as a test binary that crashes with a
// cluster running (see TestMain).
const helperEnv = "ANVIL_PGTEST_CRASH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		crashWithClusterRunning()
	}
	os.Exit(Main(m))
}

// crashWithClusterRunning starts a cluster, says where it is, and dies without
// stopping it, as a test binary that panics or is killed would.
func crashWithClusterRunning() {
	c, err := StartCluster(context.Background())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("cluster", c.PID, c.Dir)
	os.Exit(3)
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartGivesFreshDatabases(t *testing.T) {
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two Starts returned one DSN %q", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(t.Context(), `CREATE TABLE mine (x int)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE tablename = 'mine'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees the first's table: %d (%v)", n, err)
	}

	var listen, fsync string
	if err := ca.QueryRow(t.Context(), `SELECT current_setting('listen_addresses'), current_setting('fsync')`).Scan(&listen, &fsync); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("listen_addresses = %q, want none (the socket only)", listen)
	}
	if fsync != "off" {
		t.Errorf("fsync = %q, want off", fsync)
	}
	if !strings.Contains(a, "host="+os.TempDir()) && !strings.Contains(a, "host=/tmp/") {
		t.Errorf("DSN %q does not point at a socket in a temporary directory", a)
	}
}

// TestServerIsNotRoot: PostgreSQL refuses to run as root, so as root the
// server must run as someone else.
func TestServerIsNotRoot(t *testing.T) {
	conn := connect(t, Start(t))
	var pid int
	if err := conn.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	uid := processUID(t, pid)
	if uid == 0 {
		t.Fatal("the server runs as root")
	}
	if os.Geteuid() == 0 {
		if a, err := lookupAccount(serverUserName); err == nil && a.uid != uint32(uid) {
			if b, err := lookupAccount("nobody"); err != nil || b.uid != uint32(uid) {
				t.Errorf("the server runs as uid %d, neither %s nor nobody", uid, serverUserName)
			}
		}
	}
}

func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, err := strconv.Atoi(strings.Fields(rest)[1]) // effective
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// TestStopLeavesNothing: after Stop, neither the server nor its directory
// remain.
func TestStopLeavesNothing(t *testing.T) {
	c, err := StartCluster(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := c.CreateDatabase(t.Context())
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	conn := connect(t, dsn) // an open session must not hold up the shutdown
	if err := conn.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(c.PID) {
		t.Errorf("postmaster %d still runs after Stop", c.PID)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s remains after Stop (%v)", c.Dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestServerDiesWithCrashedBinary: a test binary that exits without stopping
// its cluster takes the server with it, and the next run sweeps the
// directory.
func TestServerDiesWithCrashedBinary(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "cluster %d %s", &pid, &dir); err == nil {
			break
		}
		t.Log(sc.Text())
	}
	werr := cmd.Wait()
	if pid == 0 {
		t.Fatalf("the helper started no cluster (%v)", werr)
	}
	var exit *exec.ExitError
	if !errors.As(werr, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("helper exited with %v, want status 3", werr)
	}

	// The server shuts down on its own; give it as long as a slow machine
	// needs, failing only if it never goes.
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d outlived its test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the crashed binary's directory %s is already gone: %v", dir, err)
	}
	sweepStale(filepath.Dir(dir))
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s survived the sweep (%v)", dir, err)
	}
}

// TestMissingPostgreSQLSaysHowToInstall: without the binaries, the error names
// them and the fix.
func TestMissingPostgreSQLSaysHowToInstall(t *testing.T) {
	empty := t.TempDir()
	_, err := lookBinaries([]string{empty, filepath.Join(empty, "nowhere")})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("got %v, want ErrNotInstalled", err)
	}
	for _, want := range []string{"initdb", "postgres", "apt-get install -y postgresql", "make deps"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	t.Setenv(BinDirEnv, empty)
	if _, err := findBinaries(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("with %s=%s: got %v, want ErrNotInstalled", BinDirEnv, empty, err)
	}
}

func TestBinaryVersionsNewestFirst(t *testing.T) {
	dirs := []string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/13/bin"}
	sortByVersionDescending(dirs)
	if dirs[0] != "/usr/lib/postgresql/15/bin" || dirs[2] != "/usr/lib/postgresql/9.6/bin" {
		t.Fatalf("sorted %v", dirs)
	}
}
