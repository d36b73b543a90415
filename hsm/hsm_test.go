package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// openToken makes a throwaway SoftHSM2 token and opens it with the PIN read from a file.
func openToken(t *testing.T, mutate ...func(*hsm.Config)) (*softhsmtest.Token, *hsm.Token) {
	t.Helper()
	st := softhsmtest.New(t)
	cfg := hsm.Config{
		ModulePath: st.Dir.ModulePath,
		TokenLabel: st.Label,
		PIN:        hsm.PINSource{File: st.PINFile},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("open token: %v", err)
	}
	t.Cleanup(func() { tok.Close() })
	return st, tok
}

func TestGenerateFindSignEveryAlgorithm(t *testing.T) {
	_, tok := openToken(t)
	for _, alg := range hsm.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			gen, err := tok.GenerateKey(hsm.KeySpec{Label: "key-" + string(alg), Algorithm: alg})
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			if len(gen.Ref().ID) != hsm.KeyIDLength {
				t.Errorf("generated CKA_ID is %d bytes, want %d from the token RNG", len(gen.Ref().ID), hsm.KeyIDLength)
			}
			found, err := tok.FindKey(gen.Ref())
			if err != nil {
				t.Fatalf("find by id and label: %v", err)
			}
			if !found.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(gen.Public()) {
				t.Fatal("found key's public key differs from the generated one")
			}
			switch pub := found.Public().(type) {
			case *ecdsa.PublicKey:
				want := map[hsm.Algorithm]elliptic.Curve{hsm.ECDSAP256: elliptic.P256(), hsm.ECDSAP384: elliptic.P384()}[alg]
				if pub.Curve != want {
					t.Errorf("curve %s, want %s", pub.Curve.Params().Name, want.Params().Name)
				}
			case *rsa.PublicKey:
				if pub.E != 65537 {
					t.Errorf("RSA exponent %d, want 65537", pub.E)
				}
				want := map[hsm.Algorithm]int{hsm.RSA2048: 2048, hsm.RSA3072: 3072, hsm.RSA4096: 4096}[alg]
				if pub.N.BitLen() != want {
					t.Errorf("RSA modulus %d bits, want %d", pub.N.BitLen(), want)
				}
			}
			digest := sha256.Sum256([]byte("anvil"))
			sig, err := found.Sign(nil, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			var ok bool
			switch pub := found.Public().(type) {
			case *ecdsa.PublicKey:
				ok = ecdsa.VerifyASN1(pub, digest[:], sig)
			case *rsa.PublicKey:
				ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
			}
			if !ok {
				t.Fatal("signature from the token does not verify")
			}
			if err := found.Check(context.Background()); err != nil {
				t.Fatalf("health check: %v", err)
			}
		})
	}
}

func TestGeneratedKeysAreSensitiveSignOnly(t *testing.T) {
	_, tok := openToken(t)
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.RSA2048} {
		if _, err := tok.GenerateKey(hsm.KeySpec{Label: "k-" + string(alg), Algorithm: alg}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := tok.Objects()
	if err != nil {
		t.Fatal(err)
	}
	var privates, publics int
	for _, o := range objs {
		if len(o.ID) == 0 || o.Label == "" {
			t.Errorf("%s object %q lacks CKA_ID or CKA_LABEL", o.Class, o.Label)
		}
		switch o.Class {
		case "private":
			privates++
			if !o.Sensitive || !o.AlwaysSensitive || o.Extractable || !o.NeverExtractable || !o.Private || !o.Local {
				t.Errorf("private key %q: %+v; want sensitive, always sensitive, not extractable, never extractable, private, local", o.Label, o)
			}
			if !o.Sign || o.Decrypt || o.Unwrap || o.Derive {
				t.Errorf("private key %q may do more than sign: %+v", o.Label, o)
			}
		case "public":
			publics++
		}
	}
	if privates != 2 || publics != 2 {
		t.Fatalf("got %d private and %d public objects, want 2 and 2", privates, publics)
	}
}

// pkcs11-tool (OpenSC) is how an operator would look at the token; its listing
// must show the private keys as sensitive and never extractable.
func TestPkcs11ToolShowsKeysSensitiveNeverExtractable(t *testing.T) {
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		t.Fatal("pkcs11-tool is missing: apt-get install -y opensc (or run `make deps`)")
	}
	st, tok := openToken(t)
	if _, err := tok.GenerateKey(hsm.KeySpec{Label: "int-ecdsa", Algorithm: hsm.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("pkcs11-tool", "--module", st.Dir.ModulePath, "--token-label", st.Label,
		"--login", "--pin", "env:ANVIL_TEST_PIN", "--list-objects", "--type", "privkey")
	cmd.Env = append(os.Environ(), "ANVIL_TEST_PIN="+st.PIN)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	s := string(out)
	t.Logf("pkcs11-tool --list-objects:\n%s", s)
	if !strings.Contains(s, "int-ecdsa") {
		t.Fatalf("pkcs11-tool does not list the key:\n%s", s)
	}
	for _, want := range []string{"sensitive", "always sensitive", "never extractable", "local"} {
		if !strings.Contains(s, want) {
			t.Errorf("pkcs11-tool listing lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Usage:") && strings.Contains(strings.Split(strings.SplitAfter(s, "Usage:")[1], "\n")[0], "decrypt") {
		t.Errorf("private key usable for decryption:\n%s", s)
	}
}

func TestGenerateRefusesExistingLabel(t *testing.T) {
	_, tok := openToken(t)
	first, err := tok.GenerateKey(hsm.KeySpec{Label: "root", Algorithm: hsm.ECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.GenerateKey(hsm.KeySpec{Label: "root", Algorithm: hsm.ECDSAP256})
	if !errors.Is(err, hsm.ErrExists) || !strings.Contains(err.Error(), `"root"`) {
		t.Fatalf("second key with label root: got %v, want ErrExists naming the label", err)
	}
	_, err = tok.GenerateKey(hsm.KeySpec{Label: "other", ID: first.Ref().ID, Algorithm: hsm.ECDSAP256})
	if !errors.Is(err, hsm.ErrExists) {
		t.Fatalf("second key with the same id: got %v, want ErrExists", err)
	}
	objs, err := tok.Objects()
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("refused generations left objects behind: %d objects, want 2", len(objs))
	}
}

func TestFindKeyExplainsWhatItFound(t *testing.T) {
	_, tok := openToken(t)
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "int-ecdsa", ID: []byte{1}, Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.FindKey(hsm.KeyRef{Label: "int-ecdsa", ID: []byte{2}})
	if !errors.Is(err, hsm.ErrNotFound) {
		t.Fatalf("wrong id: got %v, want ErrNotFound", err)
	}
	t.Logf("wrong id: %v", err)
	for _, want := range []string{`label "int-ecdsa" alone: 1 private key(s): "int-ecdsa" (id 01)`, "with id 02 alone: no private keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	_, err = tok.FindKey(hsm.KeyRef{Label: "nope"})
	if !errors.Is(err, hsm.ErrNotFound) || !strings.Contains(err.Error(), `"int-ecdsa" (id 01)`) {
		t.Fatalf("unknown label: got %v, want ErrNotFound listing the token's keys", err)
	}
	if _, err := tok.FindKey(hsm.KeyRef{}); err == nil {
		t.Fatal("empty key reference accepted")
	}
	if _, err := tok.FindKey(k.Ref()); err != nil {
		t.Fatalf("find by both: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	st := softhsmtest.New(t)
	base := hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}}

	t.Run("wrong PIN wraps the PKCS#11 code", func(t *testing.T) {
		bad := t.TempDir() + "/pin"
		os.WriteFile(bad, []byte("99999999\n"), 0o600)
		cfg := base
		cfg.PIN = hsm.PINSource{File: bad}
		_, err := hsm.Open(cfg)
		var code pkcs11.Error
		if !errors.As(err, &code) || code != pkcs11.CKR_PIN_INCORRECT {
			t.Fatalf("got %v, want an error wrapping CKR_PIN_INCORRECT", err)
		}
		t.Logf("wrong PIN: %v", err)
		if strings.Contains(err.Error(), "99999999") {
			t.Fatal("error message contains the PIN")
		}
		var he *hsm.Error
		if !errors.As(err, &he) || he.Token != st.Label || he.Module != st.Dir.ModulePath {
			t.Fatalf("error lacks token and module context: %#v", err)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		cfg := base
		cfg.TokenLabel = "no-such-token"
		_, err := hsm.Open(cfg)
		if !errors.Is(err, hsm.ErrNotFound) || !strings.Contains(err.Error(), "no-such-token") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("duplicate label refused", func(t *testing.T) {
		// softhsm2-util makes a second token with the same label if asked;
		// crypto11 would silently take the first.
		out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", st.Label, "--pin", "1234", "--so-pin", "5678").CombinedOutput()
		if err != nil {
			t.Fatalf("softhsm2-util: %v %s", err, out)
		}
		_, err = hsm.Open(base)
		if !errors.Is(err, hsm.ErrAmbiguous) {
			t.Fatalf("got %v, want ErrAmbiguous", err)
		}
		// By serial the right one is still reachable.
		cfg := base
		cfg.TokenLabel, cfg.TokenSerial = "", st.Serial
		tok, err := hsm.Open(cfg)
		if err != nil {
			t.Fatalf("open by serial: %v", err)
		}
		tok.Close()
	})
	t.Run("PIN from env", func(t *testing.T) {
		t.Setenv("ANVIL_TEST_PIN", st.PIN)
		cfg := base
		cfg.TokenLabel, cfg.TokenSerial = "", st.Serial
		cfg.PIN = hsm.PINSource{Env: "ANVIL_TEST_PIN"}
		tok, err := hsm.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tok.Close()
	})
	t.Run("PIN file readable by others", func(t *testing.T) {
		f := t.TempDir() + "/pin"
		os.WriteFile(f, []byte(st.PIN), 0o644)
		cfg := base
		cfg.PIN = hsm.PINSource{File: f}
		_, err := hsm.Open(cfg)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing module", func(t *testing.T) {
		cfg := base
		cfg.ModulePath = "/nonexistent/libpkcs11.so"
		_, err := hsm.Open(cfg)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/libpkcs11.so") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSignFailsFastWhenBusy(t *testing.T) {
	_, tok := openToken(t, func(c *hsm.Config) {
		c.MaxSessions = 2 // one to hold the login, one to sign
		c.SessionWait = 50 * time.Millisecond
	})
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "k", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	release := hsm.HoldSessionForTest(tok)
	start := time.Now()
	digest := sha256.Sum256(nil)
	_, err = k.Sign(nil, digest[:], crypto.SHA256)
	if !errors.Is(err, hsm.ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("busy sign waited %s", waited)
	}
	release()
	if _, err := k.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("sign after the session came back: %v", err)
	}
	if tok.Stats().Busy != 1 {
		t.Fatalf("busy counter %d, want 1", tok.Stats().Busy)
	}
}

// The token disappears under a live signer (its files are moved away) and comes
// back with the same keys: signing fails fast meanwhile, and resumes by itself.
func TestRecoversWhenTokenVanishesAndReturns(t *testing.T) {
	st, tok := openToken(t, func(c *hsm.Config) {
		c.MinBackoff = 20 * time.Millisecond
		c.MaxBackoff = 200 * time.Millisecond
	})
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "int", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k.Check(ctx); err != nil {
		t.Fatal(err)
	}
	dir, err := st.TokenPath()
	if err != nil {
		t.Fatal(err)
	}
	saved := t.TempDir() + "/saved"
	if err := os.Rename(dir, saved); err != nil {
		t.Fatal(err)
	}

	// Gone: the first sign sees invalid handles; every sign after it fails fast.
	_, err = k.SignContext(ctx, make([]byte, 32), crypto.SHA256)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign with the token gone: got %v, want ErrUnavailable", err)
	}
	t.Logf("token gone: %v", err)
	var code pkcs11.Error
	if !errors.As(err, &code) {
		t.Fatalf("error does not wrap a PKCS#11 return code: %v", err)
	}
	for i := 0; i < 20; i++ {
		start := time.Now()
		_, err := k.SignContext(ctx, make([]byte, 32), crypto.SHA256)
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("sign %d while gone: got %v, want ErrUnavailable", i, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("sign while gone took %s, want a fast failure", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tok.Stats().Available {
		t.Fatal("token reports available while its files are gone")
	}

	// Back: the same files, so the same keys.
	if err := os.Rename(saved, dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := k.Check(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("unexpected error while recovering: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("signing did not resume within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := tok.Stats()
	if s.Recoveries < 1 || !s.Available {
		t.Fatalf("stats after recovery: %+v", s)
	}
}

// A key replaced under the same label and ID (by another process, as an
// operator's mistake would be) must not be used after recovery: it is not the key
// the CA's certificate names.
func TestRecoveryRefusesASwappedKey(t *testing.T) {
	st, tok := openToken(t, func(c *hsm.Config) {
		c.MinBackoff = 20 * time.Millisecond
		c.MaxBackoff = 100 * time.Millisecond
	})
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "int", ID: []byte{7}, Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	tool := func(args ...string) {
		t.Helper()
		cmd := exec.Command("pkcs11-tool", append([]string{"--module", st.Dir.ModulePath, "--token-label", st.Label,
			"--login", "--pin", "env:ANVIL_TEST_PIN"}, args...)...)
		cmd.Env = append(os.Environ(), "ANVIL_TEST_PIN="+st.PIN)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
		}
	}
	tool("--delete-object", "--type", "privkey", "--id", "07")
	tool("--delete-object", "--type", "pubkey", "--id", "07")
	tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "int", "--id", "07")

	_, err = k.SignContext(context.Background(), make([]byte, 32), crypto.SHA256)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign with the key deleted: got %v, want ErrUnavailable", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = k.SignContext(context.Background(), make([]byte, 32), crypto.SHA256)
		if err == nil {
			t.Fatal("signed with a key that is not the one the process started with")
		}
		if strings.Contains(err.Error(), "not the key this process started with") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recovery never said the key changed; last error: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("swapped key: %v", err)
	if !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestSignAfterCloseIsUnavailable(t *testing.T) {
	_, tok := openToken(t)
	k, err := tok.GenerateKey(hsm.KeySpec{Label: "k", Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	tok.Close()
	if _, err := k.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("sign after close: got %v, want ErrUnavailable", err)
	}
}
