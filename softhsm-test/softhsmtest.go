// Package softhsmtest makes throwaway SoftHSM2 tokens for tests, CI and `make run`.
//
// It owns one thing: a private token directory with its own softhsm2.conf, so that
// nothing ever touches the system token directory. Tokens are selected by label,
// never by slot number, because SoftHSM2 moves a freshly initialised token to a
// random slot. The package never generates or reads keys; that is the job of hsm.
//
// SoftHSM2 reads SOFTHSM2_CONF once, when the module is initialised, and does not
// notice tokens created afterwards. Tests therefore use one Dir each (New sets
// SOFTHSM2_CONF with t.Setenv, which also forbids t.Parallel) and must close every
// hsm.Token they open, so that the module is finalised before the next test.
package softhsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleCandidates are the places Debian and other distributions install the
// SoftHSM2 PKCS#11 module.
var ModuleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// ErrNotInstalled says SoftHSM2 is missing, and how to get it.
var ErrNotInstalled = errors.New("SoftHSM2 is not installed: run `apt-get install -y softhsm2 opensc` (as root), or `make deps`")

// ModulePath returns the SoftHSM2 module path: $SOFTHSM2_MODULE if set, otherwise
// the first candidate that exists.
func ModulePath() (string, error) {
	if p := os.Getenv("SOFTHSM2_MODULE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("SOFTHSM2_MODULE=%s: %w", p, err)
		}
		return p, nil
	}
	for _, p := range ModuleCandidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// Dir is a private SoftHSM2 token directory and the softhsm2.conf that points at it.
type Dir struct {
	Path       string // the directory holding softhsm2.conf, tokens/ and PIN files
	ConfPath   string // value for SOFTHSM2_CONF
	TokenDir   string // directories.tokendir
	ModulePath string // the PKCS#11 module to load
}

// Token is one initialised token in a Dir.
type Token struct {
	Dir     *Dir
	Label   string
	Serial  string
	PIN     string
	SOPIN   string
	PINFile string // a 0600 file holding PIN, for configurations that read PINs from files
}

// NewDir creates (or reuses) a token directory below path and writes its softhsm2.conf.
// It does not set SOFTHSM2_CONF; use Env or Setenv.
func NewDir(path string) (*Dir, error) {
	module, err := ModulePath()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, ErrNotInstalled
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("softhsm token dir %s: %w", path, err)
	}
	d := &Dir{
		Path:       abs,
		ConfPath:   filepath.Join(abs, "softhsm2.conf"),
		TokenDir:   filepath.Join(abs, "tokens"),
		ModulePath: module,
	}
	if err := os.MkdirAll(d.TokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm token dir: %w", err)
	}
	conf := fmt.Sprintf("# written by softhsmtest; private to this directory\n"+
		"directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", d.TokenDir)
	if err := os.WriteFile(d.ConfPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm conf: %w", err)
	}
	return d, nil
}

// Env returns the environment variables a process needs to see this directory's tokens.
func (d *Dir) Env() []string {
	return []string{"SOFTHSM2_CONF=" + d.ConfPath}
}

// Labels lists the labels of the initialised tokens in the directory.
func (d *Dir) Labels() ([]string, error) {
	out, err := d.util("--show-slots")
	if err != nil {
		return nil, err
	}
	var labels []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if l, ok := strings.CutPrefix(line, "Label:"); ok {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	return labels, nil
}

// InitToken initialises a new token with the given label and a random user PIN
// and SO PIN, and writes the user PIN to a 0600 file beside the tokens. A label
// that already exists is refused: SoftHSM2 would make a second token with the same
// label, and a PKCS#11 library selecting by label would silently take the first.
func (d *Dir) InitToken(label string) (*Token, error) {
	return d.InitTokenWithPIN(label, randomHex(8))
}

// InitTokenWithPIN is InitToken with a chosen user PIN, for tests that re-create
// a token as an operator would.
func (d *Dir) InitTokenWithPIN(label, pin string) (*Token, error) {
	if label == "" {
		return nil, errors.New("softhsm: token label is empty")
	}
	existing, err := d.Labels()
	if err != nil {
		return nil, err
	}
	for _, l := range existing {
		if l == label {
			return nil, fmt.Errorf("softhsm: a token labelled %q already exists in %s", label, d.TokenDir)
		}
	}
	t := &Token{Dir: d, Label: label, PIN: pin, SOPIN: randomHex(8)}
	// softhsm2-util takes PINs only as arguments. These are throwaway test PINs for
	// a token that lives in a private temporary directory; production PINs never
	// pass through this package.
	if _, err := d.util("--init-token", "--free", "--label", label, "--pin", t.PIN, "--so-pin", t.SOPIN); err != nil {
		return nil, err
	}
	t.Serial, err = d.serialOf(label)
	if err != nil {
		return nil, err
	}
	t.PINFile = filepath.Join(d.Path, label+".pin")
	if err := os.WriteFile(t.PINFile, []byte(t.PIN+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: write PIN file: %w", err)
	}
	return t, nil
}

// TokenPath returns the directory SoftHSM2 keeps this token's objects in.
func (t *Token) TokenPath() (string, error) {
	// Each token is a directory named after its UUID; its token.object holds the
	// label. The serial is the last 16 hex digits of the UUID without dashes.
	entries, err := os.ReadDir(t.Dir.TokenDir)
	if err != nil {
		return "", fmt.Errorf("softhsm: read token dir: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		compact := strings.ReplaceAll(e.Name(), "-", "")
		if strings.HasSuffix(compact, t.Serial) {
			return filepath.Join(t.Dir.TokenDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("softhsm: no directory for token %q (serial %s) in %s", t.Label, t.Serial, t.Dir.TokenDir)
}

func (d *Dir) serialOf(label string) (string, error) {
	out, err := d.util("--show-slots")
	if err != nil {
		return "", err
	}
	// --show-slots prints "Serial number:" before "Label:" within one token block.
	var serial string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "Serial number:"); ok {
			serial = strings.TrimSpace(s)
		}
		if l, ok := strings.CutPrefix(line, "Label:"); ok && strings.TrimSpace(l) == label {
			return serial, nil
		}
	}
	return "", fmt.Errorf("softhsm: token %q not listed after init", label)
}

func (d *Dir) util(args ...string) (string, error) {
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), d.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// Never echo the arguments: they may hold the throwaway PINs.
		return "", fmt.Errorf("softhsm2-util %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// New makes a fresh token directory in t.TempDir(), points SOFTHSM2_CONF at it for
// the rest of the test, and initialises one token with a random label. Everything is
// removed when the test ends. A missing SoftHSM2 fails the test with the command
// that installs it.
func New(t testing.TB) *Token {
	t.Helper()
	d := NewDirT(t)
	tok, err := d.InitToken("anvil-test-" + randomHex(4))
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	return tok
}

// NewDirT makes a fresh token directory for a test and sets SOFTHSM2_CONF to it.
func NewDirT(t testing.TB) *Dir {
	t.Helper()
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", d.ConfPath)
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
