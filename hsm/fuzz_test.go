package hsm_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
)

// FuzzParseURI: ParseURI never panics; an accepted URI names a token, never
// carries a PIN value or a slot, and survives String and a second parse
// unchanged (RFC 7512: what Anvil prints is what it reads back).
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=anvil-online;object=int-ecdsa;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/anvil/pin",
		"pkcs11:serial=0123abcd;object=a%20b;type=private",
		"pkcs11:token=t;id=%00%ff%7e",
		"pkcs11:token=t?module-path=/a+b&pin-source=env:PIN",
		"pkcs11:token=t?module-path=/a%2Bb",
		"pkcs11:token=t;token=u",
		"pkcs11:token=t?pin-value=1234",
		"pkcs11:slot-id=1",
		"pkcs11:token=t;x-vendor=1?x-q=2",
		"pkcs11:token=%zz",
		"pkcs11:token=a;b;c",
		"pkcs11:token=t?module-path=a&module-path=b",
		"pkcs11:",
		"PKCS11:token=t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := hsm.ParseURI(s)
		if err != nil {
			return
		}
		if u.Token == "" && u.Serial == "" {
			t.Fatalf("%q accepted without a token", s)
		}
		if strings.Contains(s, "pin-value") && !strings.Contains(s, "x-") {
			// A pin-value attribute must never be accepted; x- names may
			// contain the text.
			for _, attr := range strings.FieldsFunc(s[strings.IndexByte(s, ':')+1:], func(r rune) bool { return r == ';' || r == '?' || r == '&' }) {
				if strings.HasPrefix(attr, "pin-value=") {
					t.Fatalf("%q accepted with a pin-value", s)
				}
			}
		}
		printed := u.String()
		back, err := hsm.ParseURI(printed)
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, printed, err)
		}
		if !reflect.DeepEqual(u, back) {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, u, printed, back)
		}
	})
}
