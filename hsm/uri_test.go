package hsm_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
)

func TestParseURI(t *testing.T) {
	u, err := hsm.ParseURI("pkcs11:token=anvil-online;object=int-ecdsa;id=%01%a0?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/anvil/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "anvil-online" || u.Object != "int-ecdsa" || !bytes.Equal(u.ID, []byte{1, 0xa0}) ||
		u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINSource != "file:/etc/anvil/pin" {
		t.Fatalf("parsed %+v", u)
	}
	back, err := hsm.ParseURI(u.String())
	if err != nil || back.String() != u.String() {
		t.Fatalf("round trip: %q -> %v %v", u.String(), back, err)
	}
	if ref := u.KeyRef(); ref.Label != "int-ecdsa" || !bytes.Equal(ref.ID, []byte{1, 0xa0}) {
		t.Fatalf("key ref %+v", ref)
	}
	u, err = hsm.ParseURI("pkcs11:serial=2530e7d6a4b73ed5;object=a%20b;x-vendor=1")
	if err != nil || u.Serial != "2530e7d6a4b73ed5" || u.Object != "a b" {
		t.Fatalf("serial form: %+v %v", u, err)
	}
}

func TestParseURIRefusals(t *testing.T) {
	for uri, want := range map[string]string{
		"token=x":                             "must start with pkcs11:",
		"pkcs11:object=k":                     "names no token",
		"pkcs11:token=t;slot-id=3":            "slot-id is not accepted",
		"pkcs11:token=t;color=red":            "unknown attribute color",
		"pkcs11:token=t;token=u":              "given twice",
		"pkcs11:token=t;type=cert":            "private keys only",
		"pkcs11:token=t;id=%zz":               "attribute id",
		"pkcs11:token=t?pin-value=1234":       "pin-value is refused",
		"pkcs11:token=t?module-name=softhsm2": "module-path",
		"pkcs11:token=t;object":               "has no value",
		"pkcs11:token=t?speed=fast":           "unknown query attribute",
	} {
		_, err := hsm.ParseURI(uri)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURI(%q) = %v, want an error containing %q", uri, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("error for %q repeats the PIN: %v", uri, err)
		}
	}
}

func TestPINSource(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/pin"
	os.WriteFile(f, []byte("s3cret\r\n"), 0o600)
	if pin, err := (hsm.PINSource{File: f}).Read(); err != nil || pin != "s3cret" {
		t.Fatalf("file: %q %v", pin, err)
	}
	t.Setenv("ANVIL_PIN_TEST", "envpin")
	if pin, err := (hsm.PINSource{Env: "ANVIL_PIN_TEST"}).Read(); err != nil || pin != "envpin" {
		t.Fatalf("env: %q %v", pin, err)
	}
	for name, src := range map[string]hsm.PINSource{
		"none":         {},
		"both":         {File: f, Env: "ANVIL_PIN_TEST"},
		"unset env":    {Env: "ANVIL_PIN_UNSET_FOR_TEST"},
		"missing file": {File: dir + "/nope"},
	} {
		if pin, err := src.Read(); err == nil {
			t.Errorf("%s: read %q, want an error", name, pin)
		}
	}
	os.WriteFile(dir+"/empty", nil, 0o600)
	if _, err := (hsm.PINSource{File: dir + "/empty"}).Read(); err == nil {
		t.Error("empty PIN file accepted")
	}
	if s := (hsm.PINSource{File: f}).String(); s != "file:"+f {
		t.Errorf("String() = %q", s)
	}
	for in, want := range map[string]hsm.PINSource{
		"file:/a": {File: "/a"}, "file:///a": {File: "/a"}, "/a": {File: "/a"}, "env:X": {Env: "X"},
	} {
		got, err := hsm.ParsePINSource(in)
		if err != nil || got.File != want.File || got.Env != want.Env {
			t.Errorf("ParsePINSource(%q) = %+v, %v", in, got, err)
		}
	}
	if _, err := hsm.ParsePINSource("1234"); err == nil {
		t.Error("a bare PIN was accepted as a pin-source")
	}
}
