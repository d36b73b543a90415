package hsm_test

import (
	"context"
	"crypto"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// p11kitClient finds p11-kit's client module, which speaks to `p11-kit server`
// over a socket: a faithful stand-in for a network HSM that can hang or die.
func p11kitClient(t *testing.T) string {
	t.Helper()
	for _, p := range []string{
		"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
		"/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
		"/usr/lib64/pkcs11/p11-kit-client.so",
	} {
		if _, err := os.Stat(p); err == nil {
			if _, err := exec.LookPath("p11-kit"); err == nil {
				return p
			}
		}
	}
	t.Fatal("p11-kit's client module or command is missing: apt-get install -y p11-kit p11-kit-modules (or run `make deps`)")
	return ""
}

// remoteHSM runs `p11-kit server` for one SoftHSM2 token, in its own process group
// so that the test can stop, continue and kill it with every helper it forks.
type remoteHSM struct {
	t      *testing.T
	st     *softhsmtest.Token
	socket string
	cmd    *exec.Cmd
}

func startRemote(t *testing.T, st *softhsmtest.Token, socket string) *remoteHSM {
	t.Helper()
	os.Remove(socket)
	cmd := exec.Command("p11-kit", "server", "-f", "--provider", st.Dir.ModulePath, "-n", socket, "pkcs11:token="+st.Label)
	cmd.Env = append(os.Environ(), st.Dir.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("p11-kit server: %v", err)
	}
	r := &remoteHSM{t: t, st: st, socket: socket, cmd: cmd}
	t.Cleanup(func() { r.signal(syscall.SIGCONT); r.signal(syscall.SIGKILL); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(socket); err == nil {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("p11-kit server did not create %s", socket)
	return nil
}

func (r *remoteHSM) signal(sig syscall.Signal) {
	if r.cmd.Process != nil {
		syscall.Kill(-r.cmd.Process.Pid, sig)
	}
}

// remoteToken serves a fresh SoftHSM2 token through `p11-kit server` and
// opens it through p11-kit's client module, as a network HSM would be. The
// server's socket can exist a moment before the server lists the token behind
// it (seen once in CI: "no such token in any slot" 30 ms after start), so a
// missing token is asked for again for a few seconds.
func remoteToken(t *testing.T, signTimeout, opTimeout time.Duration) (*remoteHSM, *hsm.Token) {
	t.Helper()
	client := p11kitClient(t)
	st := softhsmtest.New(t)
	socket := filepath.Join(st.Dir.Path, "p11.sock")
	remote := startRemote(t, st, socket)
	t.Setenv("P11_KIT_SERVER_ADDRESS", "unix:path="+socket)
	cfg := hsm.Config{
		ModulePath:  client,
		TokenLabel:  st.Label,
		PIN:         hsm.PINSource{File: st.PINFile},
		SignTimeout: signTimeout,
		OpTimeout:   opTimeout,
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tok, err := hsm.Open(cfg)
		if err == nil {
			t.Cleanup(func() { tok.Close() })
			return remote, tok
		}
		if !strings.Contains(err.Error(), "no such token") || time.Now().After(deadline) {
			t.Fatalf("open through p11-kit: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitForSign(t *testing.T, k *hsm.Key, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := k.Check(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("signing did not resume within %s: %v", within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// A network HSM that stops answering: the sign is given up after SignTimeout with
// ErrUnavailable, later signs fail fast, and when the HSM answers again signing
// resumes without a restart.
func TestSignGivesUpOnAHungModuleAndResumes(t *testing.T) {
	remote, tok := remoteToken(t, 300*time.Millisecond, time.Second)
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "net", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	waitForSign(t, k, 5*time.Second)

	remote.signal(syscall.SIGSTOP)
	done := make(chan error, 1)
	go func() {
		_, err := k.SignContext(context.Background(), make([]byte, 32), crypto.SHA256)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign against a hung module: got %v, want ErrUnavailable", err)
		}
		t.Logf("hung module: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("sign against a hung module never returned")
	}
	if _, err := k.SignContext(context.Background(), make([]byte, 32), crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("second sign while hung: got %v, want ErrUnavailable", err)
	}
	if tok.Stats().Timeouts != 1 {
		t.Fatalf("timeouts %d, want 1", tok.Stats().Timeouts)
	}
	// Stay hung for longer than recovery waits for the stuck session and for a
	// new login, so that recovery abandons the old context and retries.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := k.SignContext(context.Background(), make([]byte, 32), crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign while hung: got %v, want ErrUnavailable", err)
		}
	}

	remote.signal(syscall.SIGCONT)
	waitForSign(t, k, 30*time.Second)
}

// A network HSM whose server process dies and is started again: the client module
// answers CKR_DEVICE_ERROR until it is finalised and initialised again, which
// recovery does.
func TestRecoversWhenRemoteModuleDiesAndRestarts(t *testing.T) {
	remote, tok := remoteToken(t, 2*time.Second, 2*time.Second)
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "net", Algorithm: hsm.ECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	waitForSign(t, k, 5*time.Second)

	remote.signal(syscall.SIGKILL)
	remote.cmd.Wait()
	_, err = k.SignContext(context.Background(), make([]byte, 48), crypto.SHA384)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign with the server dead: got %v, want ErrUnavailable", err)
	}
	t.Logf("dead module: %v", err)

	startRemote(t, remote.st, remote.socket)
	waitForSign(t, k, 30*time.Second)
	if tok.Stats().Recoveries < 1 {
		t.Fatalf("no recovery counted: %+v", tok.Stats())
	}
}
