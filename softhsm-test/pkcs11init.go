package softhsmtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

// NewPrivateDir is NewDir for callers that initialise tokens with
// InitTokenPKCS11: it needs the module but not softhsm2-util. It writes the
// softhsm2.conf only when it is missing, so that a kept directory is reused
// as it was.
func NewPrivateDir(path string) (*Dir, error) {
	module, err := ModulePath()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("softhsm token dir %s: %w", path, err)
	}
	d := &Dir{Path: abs, ConfPath: filepath.Join(abs, "softhsm2.conf"), TokenDir: filepath.Join(abs, "tokens"), ModulePath: module}
	if err := os.MkdirAll(d.TokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm token dir: %w", err)
	}
	if _, err := os.Stat(d.ConfPath); errors.Is(err, os.ErrNotExist) {
		conf := fmt.Sprintf("# written by softhsmtest; private to this directory\n"+
			"directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", d.TokenDir)
		if err := os.WriteFile(d.ConfPath, []byte(conf), 0o600); err != nil {
			return nil, fmt.Errorf("softhsm conf: %w", err)
		}
	}
	return d, nil
}

// InitTokenPKCS11 initialises a new token through the PKCS#11 module itself
// (C_InitToken, then C_InitPIN as the security officer), with a random user
// PIN and SO PIN written to LABEL.pin and LABEL.sopin (mode 0600) beside the
// tokens. Unlike InitToken it starts no process, so no PIN ever appears in a
// command line, and it costs milliseconds. The caller must have pointed
// SOFTHSM2_CONF at d.ConfPath before the module is first loaded in this
// process, and must not hold the module open (it is finalised here). A label
// that already exists is refused, as with InitToken.
func (d *Dir) InitTokenPKCS11(label string) (*Token, error) {
	if label == "" {
		return nil, errors.New("softhsm: token label is empty")
	}
	if os.Getenv("SOFTHSM2_CONF") != d.ConfPath {
		return nil, fmt.Errorf("softhsm: SOFTHSM2_CONF must be %s before the module is loaded", d.ConfPath)
	}
	p := pkcs11.New(d.ModulePath)
	if p == nil {
		return nil, fmt.Errorf("softhsm: cannot load the PKCS#11 module %s", d.ModulePath)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return nil, fmt.Errorf("softhsm: C_Initialize: %w", err)
	}
	defer p.Finalize()

	slots, err := p.GetSlotList(false)
	if err != nil {
		return nil, fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil {
			continue // a slot without a token
		}
		if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			if strings.TrimSpace(info.Label) == label {
				return nil, fmt.Errorf("softhsm: a token labelled %q already exists in %s", label, d.TokenDir)
			}
			continue
		}
		if !found {
			free, found = s, true
		}
	}
	if !found {
		return nil, fmt.Errorf("softhsm: no free slot in %s", d.TokenDir)
	}
	t := &Token{Dir: d, Label: label, PIN: randomHex(8), SOPIN: randomHex(8)}
	if err := p.InitToken(free, t.SOPIN, label); err != nil {
		return nil, fmt.Errorf("softhsm: C_InitToken %q: %w", label, err)
	}
	// SoftHSM2 moves the token to a new slot number: find it again by label.
	slots, err = p.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err == nil && strings.TrimSpace(info.Label) == label {
			slot, found, t.Serial = s, true, strings.TrimSpace(info.SerialNumber)
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("softhsm: token %q not listed after C_InitToken", label)
	}
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("softhsm: C_OpenSession: %w", err)
	}
	defer p.CloseSession(sess)
	if err := p.Login(sess, pkcs11.CKU_SO, t.SOPIN); err != nil {
		return nil, fmt.Errorf("softhsm: C_Login as SO: %w", err)
	}
	if err := p.InitPIN(sess, t.PIN); err != nil {
		return nil, fmt.Errorf("softhsm: C_InitPIN: %w", err)
	}
	p.Logout(sess)

	t.PINFile = filepath.Join(d.Path, label+".pin")
	if err := writeSecret(t.PINFile, t.PIN); err != nil {
		return nil, err
	}
	if err := writeSecret(filepath.Join(d.Path, label+".sopin"), t.SOPIN); err != nil {
		return nil, err
	}
	return t, nil
}

// writeSecret writes a PIN to a new 0600 file; an existing file is an error,
// never overwritten or left with another mode.
func writeSecret(path, pin string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("softhsm: write PIN file: %w", err)
	}
	_, err = f.WriteString(pin + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("softhsm: write PIN file: %w", err)
	}
	return nil
}
