package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// nonceOp inserts one nonce, as RedeemNonce does.
func nonceOp(nonce string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO nonces (nonce, expires) VALUES (?, ?)`, nonce, micros(time.Now().Add(time.Hour)))
		return mapErr(err, "nonce "+nonce)
	}
}

// commitGroup runs ops as one group and returns their outcomes.
func commitGroup(s *Store, ops []*writeOp) []error {
	for _, op := range ops {
		op.done = make(chan error, 1)
	}
	s.c.commit(ops)
	outcome := make([]error, len(ops))
	for i, op := range ops {
		outcome[i] = <-op.done
	}
	return outcome
}

func countNonces(t *testing.T, s *Store, nonces ...string) (n int) {
	t.Helper()
	for _, nonce := range nonces {
		var one int
		err := s.r.QueryRow(`SELECT 1 FROM nonces WHERE nonce = ?`, nonce).Scan(&one)
		if err == nil {
			n++
		} else if !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
	}
	return n
}

// One group holds operations that succeed, one that fails half-way through
// its statements, one that breaks a constraint, and one whose caller has gone:
// each gets its own outcome, and only the successful ones leave rows.
func TestGroupOutcomesAreEachOperationsOwn(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	if err := s.RedeemNonce(ctx, "taken", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	halfWay := func(ctx context.Context, tx *sql.Tx) error {
		if err := nonceOp("half-1")(ctx, tx); err != nil {
			return err
		}
		return nonceOp("taken")(ctx, tx) // fails: the first insert must go too
	}
	ops := []*writeOp{
		{ctx: ctx, f: nonceOp("a"), oneStatement: true},
		{ctx: ctx, f: halfWay},
		{ctx: ctx, f: nonceOp("taken"), oneStatement: true},
		{ctx: gone, f: nonceOp("never"), oneStatement: true},
		{ctx: ctx, f: nonceOp("b")},
	}
	outcome := commitGroup(s, ops)
	if outcome[0] != nil || outcome[4] != nil {
		t.Errorf("successful operations: %v, %v", outcome[0], outcome[4])
	}
	if !errors.Is(outcome[1], storage.ErrConflict) || !errors.Is(outcome[2], storage.ErrConflict) {
		t.Errorf("operations breaking the unique constraint: %v, %v; want ErrConflict", outcome[1], outcome[2])
	}
	if !errors.Is(outcome[3], context.Canceled) {
		t.Errorf("operation whose caller had gone: %v, want context.Canceled", outcome[3])
	}
	if n := countNonces(t, s, "a", "b"); n != 2 {
		t.Errorf("%d of the 2 successful inserts are stored", n)
	}
	if n := countNonces(t, s, "half-1", "never"); n != 0 {
		t.Errorf("%d rows of failed or skipped operations are stored", n)
	}
}

// A failure of the group itself (here a panicking operation, after which the
// transaction's state is unknown) fails every operation of the group and
// stores nothing. That includes an operation that failed only because of an
// earlier operation's write in the group: once that write is rolled back, its
// conflict never happened.
func TestGroupFailureFailsEveryOperation(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	ops := []*writeOp{
		{ctx: ctx, f: nonceOp("x"), oneStatement: true},
		{ctx: ctx, f: nonceOp("x"), oneStatement: true}, // conflicts with the first
		{ctx: ctx, f: func(context.Context, *sql.Tx) error { panic("boom") }},
		{ctx: ctx, f: nonceOp("y"), oneStatement: true},
	}
	for i, err := range commitGroup(s, ops) {
		if err == nil || errors.Is(err, storage.ErrConflict) {
			t.Errorf("operation %d: %v; want the group's failure", i, err)
		}
	}
	if n := countNonces(t, s, "x", "y"); n != 0 {
		t.Errorf("%d rows of a failed group are stored", n)
	}
	// The writer goes on working.
	if err := s.RedeemNonce(ctx, "z", time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("write after a failed group: %v", err)
	}
}

// Many concurrent writers, some of them redeeming the same nonce: every
// nonce is accepted exactly once, whatever groups the writes fell into.
func TestGroupCommitUnderConcurrency(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	const nonces, tries = 200, 4
	var mu sync.Mutex
	accepted := map[string]int{}
	var wg sync.WaitGroup
	for i := range nonces * tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := fmt.Sprint("n", i%nonces)
			err := s.RedeemNonce(ctx, nonce, time.Now().Add(time.Hour))
			if err != nil && !errors.Is(err, storage.ErrConflict) {
				t.Errorf("redeem %s: %v", nonce, err)
			}
			if err == nil {
				mu.Lock()
				accepted[nonce]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range nonces {
		if n := accepted[fmt.Sprint("n", i)]; n != 1 {
			t.Errorf("nonce n%d accepted %d times", i, n)
		}
	}
}

// Close lets queued writes finish; writes after it fail at once.
func TestGroupClose(t *testing.T) {
	s := openTemp(t)
	if err := s.RedeemNonce(context.Background(), "before", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.RedeemNonce(context.Background(), "after", time.Now().Add(time.Hour)); !errors.Is(err, errClosed) {
		t.Fatalf("write after Close: %v, want errClosed", err)
	}
}

// Close while writers are queued: each write either commits (and is there
// after reopening) or fails with errClosed (and is not); none hangs.
func TestGroupCloseUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anvil.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const writers = 200
	outcome := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcome[i] = s.RedeemNonce(ctx, fmt.Sprint("w", i), time.Now().Add(time.Hour))
		}()
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, err := range outcome {
		stored := countNonces(t, s, fmt.Sprint("w", i)) == 1
		if !(err == nil && stored) && !(errors.Is(err, errClosed) && !stored) {
			t.Errorf("writer %d: outcome %v, stored %v", i, err, stored)
		}
	}
}
