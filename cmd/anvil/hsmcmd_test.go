package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

func TestHSMCommands(t *testing.T) {
	st := softhsmtest.New(t)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateKey(hsm.KeySpec{Label: "int-ecdsa", ID: []byte{1}, Algorithm: hsm.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	tok.Close()

	var out bytes.Buffer
	if err := hsmTokens([]string{"--module", st.Dir.ModulePath}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), st.Label) || !strings.Contains(out.String(), st.Serial) {
		t.Fatalf("tokens:\n%s", out.String())
	}

	out.Reset()
	if err := hsmObjects([]string{"--module", st.Dir.ModulePath, "--token", st.Label, "--pin-file", st.PINFile}, &out); err != nil {
		t.Fatal(err)
	}
	var private string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "private") {
			private = line
		}
	}
	for _, want := range []string{"int-ecdsa", "01", "EC", "P-256", "sensitive", "never-extractable", "sign"} {
		if !strings.Contains(private, want) {
			t.Errorf("private key line %q lacks %q\n%s", private, want, out.String())
		}
	}
	if strings.Contains(private, "EXTRACTABLE,") || strings.Contains(private, "DECRYPT") {
		t.Errorf("private key shown extractable or decrypting: %q", private)
	}

	out.Reset()
	uri := "pkcs11:token=" + st.Label + ";object=int-ecdsa;id=%01?module-path=" + st.Dir.ModulePath + "&pin-source=file:" + st.PINFile
	if err := hsmCheck([]string{"--key-uri", uri}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "ok: key int-ecdsa") {
		t.Fatalf("check: %s", out.String())
	}
	err = hsmCheck([]string{"--key-uri", strings.Replace(uri, "%01", "%02", 1)}, &out)
	if err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Fatalf("check of a missing key: %v", err)
	}
}
