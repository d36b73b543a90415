package pgtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dirPrefix starts every cluster directory's name; the creating process's ID
// follows it, so that a later run can tell an abandoned directory.
const dirPrefix = "anvil-pgtest-"

// sweepStale removes cluster directories in base whose creating process is
// gone and whose server, if any, is not running: leftovers of a test binary
// that was killed before it could clean up. The server itself died with its
// parent (parent-death signal); this takes care of the files.
func sweepStale(base string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || alive(pid) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		if serverRunning(dir) {
			continue
		}
		os.RemoveAll(dir)
	}
}

// serverRunning reports whether the postmaster recorded in dir's data
// directory is still running from that directory.
func serverRunning(dir string) bool {
	data := filepath.Join(dir, "data")
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(first)))
	if err != nil || !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err != nil || bytes.Contains(cmdline, []byte(data))
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S …".
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
