package softhsmtest

import (
	"testing"

	"github.com/miekg/pkcs11"
)

// The fault module forwards to SoftHSM2, and obeys a control file rewritten
// while it is loaded: refuse the PIN, limit sessions, fail one function.
func TestFaultModuleForwardsAndInjects(t *testing.T) {
	tok := New(t)
	f := NewFaultsT(t)
	p := pkcs11.New(f.Module)
	if p == nil {
		t.Fatalf("cannot load %s", f.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots through the fault module: %v %v", slots, err)
	}
	var slot uint
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == tok.Label {
			slot = s
		}
	}
	s1, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}

	f.SetT(t, "C_Login error=CKR_PIN_INCORRECT")
	if err := p.Login(s1, pkcs11.CKU_USER, tok.PIN); err != pkcs11.Error(pkcs11.CKR_PIN_INCORRECT) {
		t.Fatalf("login with the PIN refused: got %v, want CKR_PIN_INCORRECT", err)
	}
	f.SetT(t, "")
	if err := p.Login(s1, pkcs11.CKU_USER, tok.PIN); err != nil {
		t.Fatalf("login once the fault is cleared: %v", err)
	}
	if n := f.Logins(); n != 2 {
		t.Fatalf("C_Login counted %d times, want 2", n)
	}

	f.SetT(t, "sessions=2")
	s2, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatalf("second session under a limit of 2: %v", err)
	}
	if _, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION); err != pkcs11.Error(pkcs11.CKR_SESSION_COUNT) {
		t.Fatalf("third session under a limit of 2: got %v, want CKR_SESSION_COUNT", err)
	}
	p.CloseSession(s2)

	f.SetT(t, "C_GenerateRandom error=CKR_DEVICE_ERROR count=1")
	if _, err := p.GenerateRandom(s1, 8); err != pkcs11.Error(pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("first call under count=1: got %v, want CKR_DEVICE_ERROR", err)
	}
	if _, err := p.GenerateRandom(s1, 8); err != nil {
		t.Fatalf("second call under count=1: %v", err)
	}

	f.SetT(t, "closeall")
	if _, err := p.GenerateRandom(s1, 8); err != pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID) {
		t.Fatalf("after closeall: got %v, want CKR_SESSION_HANDLE_INVALID", err)
	}
}
