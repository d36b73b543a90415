package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// port is the port number in the socket's name. Nothing listens on TCP, and
// the socket lives in the cluster's own directory, so it cannot collide.
const port = 5432

// superuser is the cluster's bootstrap role, trusted on the socket.
const superuser = "postgres"

// Cluster is one running throwaway PostgreSQL server.
type Cluster struct {
	// Dir holds everything: data/, the socket, server.log.
	Dir string
	// PID is the postmaster's process ID.
	PID int

	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{} // closed when the postmaster has exited
	waitErr error         // why it exited; read only after done

	mu    sync.Mutex
	admin *pgx.Conn // creates the test databases
}

// StartCluster creates and starts a cluster in a new temporary directory,
// returning when it accepts connections. The caller must Stop it.
func StartCluster(ctx context.Context) (*Cluster, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	base := tempBase(owner)
	sweepStale(base)
	dir, err := os.MkdirTemp(base, fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{Dir: dir}
	if err := c.start(ctx, bins, owner); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, bins binaries, owner *account) error {
	if err := owner.chown(c.Dir); err != nil {
		return fmt.Errorf("pgtest: give %s to %s: %w", c.Dir, owner.name, err)
	}
	var err error
	if c.log, err = os.OpenFile(filepath.Join(c.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	data := filepath.Join(c.Dir, "data")
	initdb := exec.CommandContext(ctx, bins.initdb, "-D", data, "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	c.setup(initdb, owner)
	if err := initdb.Run(); err != nil {
		return fmt.Errorf("pgtest: %s: %w\n%s", bins.initdb, err, c.logTail())
	}

	args := []string{"-D", data,
		"-k", c.Dir, "-p", fmt.Sprint(port),
		"-c", "listen_addresses=", // the socket only
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "max_connections=200",
		"-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic"}
	// pg_stat_statements, where the installation has it, lets benchmarks
	// count the statements (round trips) behind one certificate.
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(bins.postgres)), "lib", "pg_stat_statements.so")); err == nil {
		args = append(args, "-c", "shared_preload_libraries=pg_stat_statements")
	}
	c.cmd = exec.Command(bins.postgres, args...)
	c.setup(c.cmd, owner)
	// If this process dies without stopping the server (a crash, a killed
	// test binary), the kernel tells the server to shut down at once.
	c.cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := c.run(); err != nil {
		return fmt.Errorf("pgtest: %s: %w", bins.postgres, err)
	}
	c.PID = c.cmd.Process.Pid
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	return nil
}

// setup makes cmd run in the cluster directory as owner, with a clean
// environment (no PG* variables from the caller), logging to server.log.
func (c *Cluster) setup(cmd *exec.Cmd, owner *account) {
	cmd.Dir = c.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "HOME=" + c.Dir, "TZ=UTC"}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.credential(), Setpgid: true}
}

// run starts the postmaster from a goroutine locked to its OS thread until the
// postmaster exits: the parent-death signal fires when the thread that
// started the child ends, and Go may otherwise end or reuse threads at will.
func (c *Cluster) run() error {
	c.done = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the runtime ends this thread when the goroutine
		// returns, which is after the postmaster has exited.
		if err := c.cmd.Start(); err != nil {
			started <- err
			close(c.done)
			return
		}
		started <- nil
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	return <-started
}

// waitReady connects until the server answers, it exits, or a minute passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, c.dsn("postgres"))
		ccancel()
		if err == nil {
			c.admin = conn
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("pgtest: the server exited while starting (%v)\n%s", c.waitErr, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: the server did not accept connections: %w\n%s", err, c.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dsn returns the connection string of database name, over the socket.
func (c *Cluster) dsn(name string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.Dir, port, superuser, name)
}

// CreateDatabase creates a new, empty database with a random name and returns
// its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	b := make([]byte, 8)
	rand.Read(b)
	name := "anvil_" + hex.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin == nil {
		return "", errors.New("pgtest: the cluster is stopped")
	}
	// The name is ours, lowercase hex: no quoting to get wrong.
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return c.dsn(name), nil
}

// Stop shuts the server down (fast shutdown, then SIGKILL if it lingers) and
// removes the cluster's directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	c.mu.Lock()
	if c.admin != nil {
		c.admin.Close(context.Background())
		c.admin = nil
	}
	c.mu.Unlock()
	if c.cmd != nil && c.done != nil {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				errs = append(errs, fmt.Errorf("pgtest: the server ignored a fast shutdown for 30s; killed it\n%s", c.logTail()))
				c.cmd.Process.Kill()
				<-c.done
			}
		}
	}
	if c.log != nil {
		c.log.Close()
	}
	if c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: %w", err))
		}
	}
	return errors.Join(errs...)
}

// logTail returns the end of server.log, for error messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "server.log: …" + string(bytes.TrimSpace(b))
}

// tempBase returns the directory to create clusters in: the usual temporary
// directory, unless the server's user could not reach into it, or the socket
// path inside would be too long for a Unix socket (107 bytes).
func tempBase(owner *account) string {
	base := os.TempDir()
	tooLong := len(base)+len("/"+dirPrefix+"4194304-1234567890/.s.PGSQL.5432") > 100
	if tooLong || (owner != nil && !reachable(base)) {
		return "/tmp"
	}
	return base
}

// reachable reports whether every directory from / down to dir lets others
// search it.
func reachable(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || !strings.Contains(d, "/") {
			return true
		}
	}
}
