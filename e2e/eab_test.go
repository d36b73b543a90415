package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"
)

// eabKey makes an External Account Binding key with `anvil admin eab create`,
// as the CA's operator would for a customer, and returns its key ID and MAC
// key as printed.
func eabKey(t *testing.T, ca *CA, allowSuffixes ...string) (kid, hmacKey string) {
	t.Helper()
	args := []string{"eab", "create", "--config", filepath.Base(ca.cfgPath), "--comment", t.Name()}
	for _, s := range allowSuffixes {
		args = append(args, "--allow-suffix", s)
	}
	out, err := ca.admin(t, args...)
	if err != nil {
		t.Fatalf("anvil admin eab create: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "key id:"); ok {
			kid = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "hmac key:"); ok {
			hmacKey = strings.TrimSpace(v)
		}
	}
	if kid == "" || hmacKey == "" {
		t.Fatalf("anvil admin eab create printed no key:\n%s", out)
	}
	return kid, hmacKey
}

// External Account Binding (RFC 8555 7.3.4) with external_account_required:
// accounts are made only with a key the operator handed out, a key binds one
// account, and a key may limit the names its account orders.
func TestEAB(t *testing.T) {
	ca := NewCA(t, WithACME("external_account_required: true"))
	ctx := context.Background()
	// registerEAB registers a fresh key with lego's EAB support; the client
	// then acts for the new account.
	registerEAB := func(t *testing.T, kid, hmacKey string) (*lego.Client, *legoUser, error) {
		t.Helper()
		client, user := legoClient(t, ca, newKey(t))
		reg, err := client.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmacKey,
		})
		if err == nil {
			user.reg = reg
		}
		return client, user, err
	}

	t.Run("the directory says so", func(t *testing.T) {
		rc := newRawClient(t, ca, newKey(t))
		if v, _ := rc.directoryMeta()["externalAccountRequired"].(bool); !v {
			t.Fatalf("meta.externalAccountRequired = %v", rc.directoryMeta()["externalAccountRequired"])
		}
	})

	t.Run("an account without a binding is refused", func(t *testing.T) {
		client, _ := legoClient(t, ca, newKey(t))
		_, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		expectLegoProblem(t, err, "externalAccountRequired")
	})

	kid, hmacKey := eabKey(t, ca)
	var bound *legoUser
	t.Run("lego binds an account and orders", func(t *testing.T) {
		client, user, err := registerEAB(t, kid, hmacKey)
		if err != nil {
			t.Fatalf("register with EAB: %v", err)
		}
		bound = user
		res := mustObtain(t, client, obtainReq("eab.anvil-e2e.com"))
		verifyBundle(t, ca, res.Certificate, "eab.anvil-e2e.com")
		// The operator sees the key bound to that account.
		out, err := ca.admin(t, "eab", "list", "--config", filepath.Base(ca.cfgPath))
		if err != nil {
			t.Fatalf("anvil admin eab list: %v\n%s", err, out)
		}
		accountID := user.reg.Location[strings.LastIndexByte(user.reg.Location, '/')+1:]
		if !lineWith(out, kid, "bound", accountID) {
			t.Fatalf("eab list does not show %s bound to %s:\n%s", kid, accountID, out)
		}
	})

	t.Run("the bound account's key finds it without a binding", func(t *testing.T) {
		if bound == nil {
			t.Fatal("no bound account (previous subtest failed)")
		}
		client, _ := legoClient(t, ca, bound.key)
		acct, err := client.Registration.ResolveAccountByKey(ctx)
		if err != nil || acct.Location != bound.reg.Location {
			t.Fatalf("resolve: %v, %v", acct, err)
		}
	})

	t.Run("a key binds one account", func(t *testing.T) {
		_, _, err := registerEAB(t, kid, hmacKey)
		expectLegoProblem(t, err, "unauthorized")
	})

	t.Run("accounts racing for one key", func(t *testing.T) {
		// Eight lego clients register with the same fresh key at once: one
		// account is made, the others are refused.
		kid, hmacKey := eabKey(t, ca)
		var clients []*lego.Client
		for range 8 {
			c, _ := legoClient(t, ca, newKey(t))
			clients = append(clients, c)
		}
		errs := make([]error, len(clients))
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
					TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmacKey,
				})
			}()
		}
		wg.Wait()
		made := 0
		for _, err := range errs {
			if err == nil {
				made++
				continue
			}
			expectLegoProblem(t, err, "unauthorized")
		}
		if made != 1 {
			t.Fatalf("%d accounts bound with one key", made)
		}
	})

	t.Run("a wrong MAC key is refused and leaves the key unbound", func(t *testing.T) {
		kid, hmacKey := eabKey(t, ca)
		wrong := make([]byte, 32)
		rand.Read(wrong)
		_, _, err := registerEAB(t, kid, base64.RawURLEncoding.EncodeToString(wrong))
		expectLegoProblem(t, err, "unauthorized")
		if _, _, err := registerEAB(t, kid, hmacKey); err != nil {
			t.Fatalf("the right MAC key after a wrong one: %v", err)
		}
	})

	t.Run("an unknown key ID is refused", func(t *testing.T) {
		_, _, err := registerEAB(t, "no-such-key-id", hmacKey)
		expectLegoProblem(t, err, "unauthorized")
	})

	t.Run("a revoked key is refused", func(t *testing.T) {
		kid, hmacKey := eabKey(t, ca)
		if out, err := ca.admin(t, "eab", "revoke", "--config", filepath.Base(ca.cfgPath), kid); err != nil {
			t.Fatalf("anvil admin eab revoke: %v\n%s", err, out)
		}
		_, _, err := registerEAB(t, kid, hmacKey)
		expectLegoProblem(t, err, "unauthorized")
	})

	t.Run("a key's allowed suffixes limit its account's names", func(t *testing.T) {
		kid, hmacKey := eabKey(t, ca, "eab-allowed.anvil-e2e.com")
		client, _, err := registerEAB(t, kid, hmacKey)
		if err != nil {
			t.Fatalf("register with EAB: %v", err)
		}
		for _, ok := range []string{"eab-allowed.anvil-e2e.com", "www.eab-allowed.anvil-e2e.com"} {
			mustObtain(t, client, obtainReq(ok))
		}
		for _, bad := range [][]string{
			{"elsewhere.anvil-e2e.com"},
			{"noteab-allowed.anvil-e2e.com"},
			{"eab-allowed.anvil-e2e.com.evil.example"},
			{"www.eab-allowed.anvil-e2e.com", "elsewhere.anvil-e2e.com"},
			{"127.0.0.1"},
		} {
			_, err := client.Certificate.Obtain(ctx, obtainReq(bad...))
			expectLegoProblem(t, err, "rejectedIdentifier")
		}
	})
}

// lineWith reports whether some line of out contains every one of words.
func lineWith(out string, words ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
