package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// serverUserName is the system account the server runs as when the tests run
// as root; it is created if missing.
const serverUserName = "anvil-pgtest"

// account is a user to run the server as. A nil *account means the current
// user, which is fine unless that is root.
type account struct {
	name     string
	uid, gid uint32
}

// credential makes a child process run as a, with no supplementary groups
// (root's must not leak into the server).
func (a *account) credential() *syscall.Credential {
	if a == nil {
		return nil
	}
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: []uint32{}}
}

// chown gives path to a.
func (a *account) chown(path string) error {
	if a == nil {
		return nil
	}
	return os.Chown(path, int(a.uid), int(a.gid))
}

// serverAccount returns who should run the server: nil when not root;
// otherwise anvil-pgtest, created with useradd if need be, or nobody if it
// cannot be created.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if a, err := lookupAccount(serverUserName); err == nil {
		return a, nil
	}
	addErr := addSystemUser(serverUserName)
	// Another test binary may have created it meanwhile: look again either way.
	if a, err := lookupAccount(serverUserName); err == nil {
		return a, nil
	}
	if a, err := lookupAccount("nobody"); err == nil {
		return a, nil
	}
	return nil, fmt.Errorf("pgtest: running as root, and no unprivileged user to run PostgreSQL as: "+
		"%s could not be created (%v) and nobody does not exist", serverUserName, addErr)
}

func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("user %s is root", name)
	}
	return &account{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

func addSystemUser(name string) error {
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		useradd = "/usr/sbin/useradd"
	}
	out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %w: %s", name, err, out)
	}
	return nil
}
