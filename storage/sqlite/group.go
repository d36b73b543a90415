package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/mattn/go-sqlite3"
)

// Group commit. Every write of a Store is an operation that one caller at a
// time (the leader, see committer) runs, in a single transaction, together
// with all the operations waiting when it starts, and then tells each its own
// outcome. SQLite admits one writer at a
// time anyway; what grouping saves is the per-transaction cost — BEGIN, the
// commit's WAL frames (a page several operations touch is written once), the
// locks — which under load was most of the cost of a write. Alone, an
// operation still commits at once, in a transaction of its own.
//
// What each operation sees is unchanged: it is atomic (a failed operation
// leaves nothing behind, whatever the others in its group did), and it
// returns only after its changes are durable to the extent the connection's
// synchronous setting makes any commit durable. What may differ is that one
// operation's failure to commit as a group (the disk is full, the file is
// locked by another process past the busy timeout) fails every operation of
// that group.

// maxGroup bounds how many operations share one transaction, so one commit
// never holds the write lock for long.
const maxGroup = 64

// writeOp is one operation waiting for its group.
type writeOp struct {
	// ctx is the caller's: an operation whose caller has gone by the time its
	// group starts is not run. It is never passed to SQL: interrupting a write
	// would make SQLite roll back the whole group's transaction.
	ctx context.Context
	f   func(ctx context.Context, tx *sql.Tx) error
	// oneStatement says f changes the database in at most one statement, which
	// SQLite makes atomic by itself: it needs no savepoint of its own.
	oneStatement bool
	// done receives the operation's outcome, or errLead when its caller is to
	// run the next group itself.
	done chan error
}

// committer owns the writer connection once the store is open.
//
// No goroutine of its own runs the groups: the caller that finds no group
// under way runs one itself, with the operations queued by then, and when it
// is done hands the lead to the oldest operation that queued meanwhile, whose
// caller runs the next group. Alone, a write thus runs on its caller's
// goroutine with no hand-off at all; a hand-off to a committer goroutine and
// back cost two wake-ups of an idle thread per write, about 8% of the
// server's CPU per certificate at concurrency 1 (make bench-acme), where
// nothing is ever grouped. Under load the groups form as before: every
// caller that arrives while a group runs queues for the next.
type committer struct {
	db      *sql.DB
	mu      sync.Mutex
	closed  bool
	leading bool       // a caller is running a group, or has been handed the lead
	queue   []*writeOp // waiting for the next group, oldest first
	idle    *sync.Cond // on mu: signalled when the lead ends with nothing queued
}

var errClosed = errors.New("sqlite: the store is closed")

// errLead tells a queued operation's caller to run the next group.
var errLead = errors.New("sqlite: lead the next group")

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// do runs f in the next group and returns its outcome once the group has
// committed (or failed).
func (c *committer) do(ctx context.Context, oneStatement bool, f func(ctx context.Context, tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, f: f, oneStatement: oneStatement, done: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	if c.leading {
		c.queue = append(c.queue, op)
		c.mu.Unlock()
		// The wait is not cut short by ctx: once queued, the operation may
		// run, and the caller must learn whether it did.
		if err := <-op.done; err != errLead {
			return err
		}
	} else {
		c.leading = true
		c.mu.Unlock()
	}
	c.lead(op)
	return <-op.done
}

// lead runs one group, first and the operations queued behind it, then passes
// the lead on. It is called holding the lead, with first taken off the queue.
func (c *committer) lead(first *writeOp) {
	// Passed on even if the group panics (a bug outside the operations, which
	// callOp guards): the callers queued behind must not wait forever.
	defer c.passLead()
	// Let the goroutines that are runnable now reach the queue first: under
	// load, requests finishing their reads are about to write, and a yield
	// here took the mean group from 1.2 to 2.2 operations at concurrency 16
	// (make bench-acme), about 5% of the server's CPU per certificate. With
	// nothing else runnable it returns at once.
	runtime.Gosched()
	c.mu.Lock()
	n := min(len(c.queue), maxGroup-1)
	group := make([]*writeOp, 0, n+1)
	group = append(append(group, first), c.queue[:n]...)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.mu.Unlock()
	c.commit(group)
}

// passLead hands the lead to the oldest queued operation, or gives it up.
func (c *committer) passLead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.leading = false
		c.idle.Broadcast()
		return
	}
	next := c.queue[0]
	c.queue = append(c.queue[:0], c.queue[1:]...)
	next.done <- errLead
}

// close lets the queued operations finish; operations after it fail with
// errClosed.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	for c.leading {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// commit runs one group and delivers every outcome.
func (c *committer) commit(group []*writeOp) {
	errs := make([]error, len(group))
	// gone marks operations not run because their caller had gone. Every
	// other outcome is replaced when the group fails: even an operation's
	// own failure, which may have come from an earlier operation's write
	// (a conflict with a revocation that is then rolled back).
	gone := make([]bool, len(group))
	failGroup := func(err error) {
		for i := range errs {
			if !gone[i] {
				errs[i] = err
			}
		}
	}
	defer func() {
		// A panic here (outside the operations, which callOp guards) is a
		// bug: no operation may then pass for done. The process goes down
		// with it, as it would without this.
		r := recover()
		if r != nil {
			failGroup(groupPanic{r})
		}
		for i, op := range group {
			op.done <- errs[i]
		}
		if r != nil {
			panic(r)
		}
	}()
	live := 0
	for i, op := range group {
		if errs[i] = op.ctx.Err(); errs[i] != nil {
			gone[i] = true
		} else {
			live++
		}
	}
	if live == 0 {
		return
	}
	ctx := context.Background()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		failGroup(fmt.Errorf("begin: %w", err))
		return
	}
	for i, op := range group {
		if gone[i] {
			continue
		}
		opErr, groupErr := runOp(ctx, tx, op)
		if groupErr != nil {
			tx.Rollback()
			failGroup(groupErr)
			return
		}
		errs[i] = opErr
	}
	if err := tx.Commit(); err != nil {
		failGroup(fmt.Errorf("commit: %w", err))
	}
}

// runOp runs one operation inside the group's transaction. opErr is the
// operation's own failure, after which the transaction goes on without its
// changes; groupErr is a failure after which the transaction cannot be trusted
// (SQLite may have rolled it back already, so later statements would run
// outside it) and the group must be abandoned.
func runOp(ctx context.Context, tx *sql.Tx, op *writeOp) (opErr, groupErr error) {
	if !op.oneStatement {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT op`); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
	}
	opErr = callOp(ctx, tx, op)
	if opErr != nil && breaksTransaction(opErr) {
		return nil, opErr
	}
	if op.oneStatement {
		return opErr, nil
	}
	if opErr != nil {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO op`); err != nil {
			return nil, fmt.Errorf("roll back a failed operation (%v): %w", opErr, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE op`); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return opErr, nil
}

// callOp runs op.f, turning a panic into a failure of the whole group: what
// the operation had done by then is unknown.
func callOp(ctx context.Context, tx *sql.Tx, op *writeOp) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = groupPanic{r}
		}
	}()
	return op.f(ctx, tx)
}

type groupPanic struct{ v any }

func (p groupPanic) Error() string { return fmt.Sprintf("write operation panicked: %v", p.v) }

// breaksTransaction says whether an operation's error may have ended the
// transaction or left it in an unknown state: the errors after which SQLite
// may roll a transaction back by itself (disk full, I/O, busy or locked, out
// of memory, interrupted, aborted) and those that say the file itself is in
// trouble. Other SQLite errors (a constraint, a value too big, a bad
// statement) undo only their statement, and errors made in Go (a conflict
// found by counting rows, a bad argument) change nothing.
func breaksTransaction(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrFull, sqlite3.ErrIoErr, sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrNomem,
			sqlite3.ErrInterrupt, sqlite3.ErrAbort, sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen,
			sqlite3.ErrReadonly, sqlite3.ErrProtocol:
			return true
		}
	}
	var p groupPanic
	return errors.As(err, &p) || errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn)
}
