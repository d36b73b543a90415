package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The fault-injection module (faultmod/faultmod.c) is a PKCS#11 library loaded
// in place of SoftHSM2: it forwards every call to the real module and, from a
// control file a test rewrites while the code under test runs, makes chosen
// functions fail, hang or return corrupted signatures, closes all sessions,
// limits sessions, or refuses the PIN. The rules are described at the top of
// faultmod.c.

// FaultModuleFile is where `make test` builds the fault module, relative to the
// repository root.
const FaultModuleFile = "bin/libanvilfault.so"

var (
	buildMu sync.Mutex
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// FaultModulePath returns the fault module, building it with the system C
// compiler when it is missing or older than its source (as `make test` does).
func FaultModulePath() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	root := repoRoot()
	src := filepath.Join(root, "softhsm-test", "faultmod", "faultmod.c")
	out := filepath.Join(root, FaultModuleFile)
	srcInfo, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("fault module source: %w", err)
	}
	if outInfo, err := os.Stat(out); err == nil && !outInfo.ModTime().Before(srcInfo.ModTime()) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	// Build beside the target and rename, so that test binaries building it at
	// the same time never load a half-written library.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := exec.Command(cc(), "-shared", "-fPIC", "-O2", "-Wall", "-I/usr/include/p11-kit-1",
		"-Wl,-z,nodelete", "-o", tmp, src, "-ldl", "-lpthread")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building the fault module (needs a C compiler and libp11-kit-dev: apt-get install -y gcc libp11-kit-dev, or `make deps`): %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

func cc() string {
	if c := os.Getenv("CC"); c != "" {
		return c
	}
	return "cc"
}

// Faults controls one fault module: its control file and its login counter.
type Faults struct {
	Module     string // the fault module, to configure in place of SoftHSM2
	Real       string // the module it forwards to
	Control    string // the control file
	Counter    string // where it writes the number of C_Login calls
	mu         sync.Mutex
	generation int
}

// NewFaults prepares a fault module in front of SoftHSM2 with a control file in
// dir and no faults. Env gives the variables the process that loads it needs;
// Setenv sets them for this test.
func NewFaults(dir string) (*Faults, error) {
	mod, err := FaultModulePath()
	if err != nil {
		return nil, err
	}
	real, err := ModulePath()
	if err != nil {
		return nil, err
	}
	f := &Faults{Module: mod, Real: real, Control: filepath.Join(dir, "faults.ctl"), Counter: filepath.Join(dir, "faults.logins")}
	if err := f.Set(""); err != nil {
		return nil, err
	}
	return f, nil
}

// NewFaultsT is NewFaults in t.TempDir(), with the variables set for the test.
func NewFaultsT(t testing.TB) *Faults {
	t.Helper()
	f, err := NewFaults(t.TempDir())
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	for _, kv := range f.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return f
}

// Env returns the environment the loading process needs.
func (f *Faults) Env() []string {
	return []string{"ANVIL_FAULT_MODULE=" + f.Real, "ANVIL_FAULT_CONTROL=" + f.Control, "ANVIL_FAULT_COUNTER=" + f.Counter}
}

// Set replaces the rules, atomically: the module sees the old rules or the new
// ones, and every counter (count=, every=) starts afresh.
func (f *Faults) Set(rules string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.generation++
	// A comment that changes each time makes every rewrite visible to the
	// module's stat check, even within one mtime tick and at the same size.
	body := fmt.Sprintf("# generation %d\n%s\n", f.generation, rules)
	tmp := f.Control + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.Control)
}

// SetT is Set that fails the test on error.
func (f *Faults) SetT(t testing.TB, rules string) {
	t.Helper()
	if err := f.Set(rules); err != nil {
		t.Fatalf("fault control file: %v", err)
	}
}

// Logins returns how many times C_Login was called through the module.
func (f *Faults) Logins() int {
	b, err := os.ReadFile(f.Counter)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
