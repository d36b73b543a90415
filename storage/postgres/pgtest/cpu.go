package pgtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerCPU is the CPU time (user+system) the test binary's cluster has used
// so far: the postmaster, every live child (backends, WAL writer,
// checkpointer …) and every child that has exited and been reaped. Benchmarks
// take the difference over a run, so that a deployment on PostgreSQL is
// charged for its database server as SQLite, which runs in-process, is.
// It is zero when no cluster was started.
func ServerCPU() (time.Duration, error) {
	mu.Lock()
	c := shared
	mu.Unlock()
	if c == nil {
		return 0, nil
	}
	self, err := procTimes(c.PID)
	if err != nil {
		return 0, err
	}
	// utime+stime of the postmaster, and cutime+cstime of its reaped children.
	total := self[0] + self[1] + self[2] + self[3]
	kids, err := children(c.PID)
	if err != nil {
		return 0, err
	}
	for _, pid := range kids {
		t, err := procTimes(pid)
		if err != nil {
			continue // exited since it was listed: the postmaster's cutime has it, or will
		}
		total += t[0] + t[1]
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(total) * time.Second / clkTck, nil
}

// procTimes reads utime, stime, cutime, cstime (clock ticks) of pid.
func procTimes(pid int) ([4]int64, error) {
	var out [4]int64
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return out, err
	}
	s := string(b)
	// The command name may hold spaces; the fields after it start at the last ")".
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 15 {
		return out, fmt.Errorf("pgtest: short /proc/%d/stat", pid)
	}
	for i := range out {
		out[i], _ = strconv.ParseInt(fields[11+i], 10, 64)
	}
	return out, nil
}

// children lists the processes whose parent is pid.
func children(pid int) ([]int, error) {
	// /proc/PID/task/TID/children lists the children of each thread; the
	// postmaster is single-threaded.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, fmt.Errorf("pgtest: children of %d: %w", pid, err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}
