package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// KeyRef names a key pair on a token by CKA_ID and CKA_LABEL. Configurations
// should give both; at least one is required.
type KeyRef struct {
	ID    []byte
	Label string
}

func (r KeyRef) String() string {
	switch {
	case r.Label != "" && len(r.ID) > 0:
		return fmt.Sprintf("%s (id %x)", r.Label, r.ID)
	case r.Label != "":
		return r.Label
	}
	return "id " + hex.EncodeToString(r.ID)
}

// Key is a private key on a token, used through crypto.Signer. Its public key was
// read from the token when it was found and never changes: after recovery the key
// found again must have the same public key, or it is not used.
type Key struct {
	token *Token
	ref   KeyRef
	pub   crypto.PublicKey

	sigCheckFailures atomic.Uint64
}

var _ crypto.Signer = (*Key)(nil)

// Ref returns the CKA_ID and CKA_LABEL the key was found by.
func (k *Key) Ref() KeyRef { return k.ref }

// Token returns the token the key lives on.
func (k *Key) Token() *Token { return k.token }

// Public returns the public half, as read from the token.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs digest in the HSM. It implements crypto.Signer; rand is ignored,
// since the token uses its own generator. See SignContext.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest in the HSM. It fails at once with ErrUnavailable while
// the token is down, with ErrBusy when no session frees up within
// Config.SessionWait, and with ErrUnavailable when the module does not answer
// within Config.SignTimeout (which also starts recovery). ECDSA signatures come
// back DER-encoded, as X.509 wants them.
//
// A call that fails with a device or session error is tried once more on the
// next session of the pool before the token is declared down: one bad call is
// not a dead token. A call that hangs is never retried (SignTimeout ends it),
// and nothing here ever logs in.
//
// Every signature is verified with the key's public key before it is returned:
// an HSM can return a corrupted signature as success. One that does not verify
// is an ErrSignatureCheckFailed, counted, logged, and reported by Health until
// the token signs correctly again. Callers that store what was signed still
// check it against what they meant to sign (issuance does).
func (k *Key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	t := k.token
	label := k.ref.Label
	st, err := t.current("sign", label)
	if err != nil {
		return nil, err
	}
	signer := st.signers[k]
	if signer == nil {
		return nil, t.err("sign", label, ErrUnavailable, errors.New("key not present in the current session state"))
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok && pss.SaltLength == rsa.PSSSaltLengthAuto {
		// crypto11 v1 cannot sign with an automatic salt length; the hash length is
		// what X.509 uses anyway.
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: pss.Hash}
	}

	if err := t.acquire(ctx); err != nil {
		return nil, t.err("sign", label, nil, err)
	}
	type result struct {
		sig []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer t.release()
		sig, err := signer.Sign(nil, digest, opts)
		if err != nil && retryable(err) {
			// crypto11's pool is a FIFO of its sessions: the failed one goes to
			// the back, so the retry runs on another session (or a new one)
			// whenever max_sessions leaves two or more for signing.
			t.stats.retries.Add(1)
			t.cfg.Logger.Warn("hsm sign failed; trying once more", "module", t.cfg.ModulePath, "token", t.name, "key", label, "error", err.Error())
			first := err
			sig, err = signer.Sign(nil, digest, opts)
			if err == nil && sessionBroken(first) {
				// The token is fine but one pooled session is dead, and crypto11
				// keeps dead sessions: replace the context, off this path.
				go t.refresh(st.gen, first)
			}
		}
		done <- result{sig, err}
	}()
	timer := time.NewTimer(t.cfg.SignTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.stats.signErrors.Add(1)
			if tokenGone(r.err) {
				t.fail(st.gen, r.err)
				return nil, t.err("sign", label, ErrUnavailable, r.err)
			}
			return nil, t.err("sign", label, nil, explainSessionCount(r.err, t.cfg.MaxSessions))
		}
		t.stats.signs.Add(1)
		if err := verify(k.pub, digest, r.sig, opts); err != nil {
			t.signatureCheckFailed(k, err)
			return nil, t.err("sign", label, ErrSignatureCheckFailed, err)
		}
		t.signedCorrectly(k)
		return r.sig, nil
	case <-timer.C:
		t.stats.timeouts.Add(1)
		cause := fmt.Errorf("module did not answer within %s", t.cfg.SignTimeout)
		t.fail(st.gen, cause)
		return nil, t.err("sign", label, ErrUnavailable, cause)
	case <-ctx.Done():
		return nil, t.err("sign", label, nil, ctx.Err())
	}
}

// acquire takes a signing session slot, waiting at most Config.SessionWait.
func (t *Token) acquire(ctx context.Context) error {
	select {
	case t.sem <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(t.cfg.SessionWait)
	defer timer.Stop()
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-timer.C:
		t.stats.busy.Add(1)
		return fmt.Errorf("%w (waited %s for one of %d)", ErrBusy, t.cfg.SessionWait, cap(t.sem))
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Token) release() { <-t.sem }

// Check signs a fresh random digest and verifies the signature with the key's
// public key: the start-up and on-demand health check.
func (k *Key) Check(ctx context.Context) error {
	digest := make([]byte, sha256.Size)
	if _, err := rand.Read(digest); err != nil {
		return err
	}
	opts := crypto.SHA256
	// SignContext verifies the signature with the key's public key.
	_, err := k.SignContext(ctx, digest, opts)
	return err
}

// CheckAgainst checks that pub, typically an issuer certificate's key, is this
// key's public key, and that a test signature verifies with it.
func (k *Key) CheckAgainst(ctx context.Context, pub crypto.PublicKey) error {
	if err := samePublicKey(k.pub, pub); err != nil {
		return k.token.err("check", k.ref.Label, nil, err)
	}
	return k.Check(ctx)
}

// FindKey finds exactly one key pair by ID and label, checks that its public half
// carries the same ID and label, test-signs with it and verifies the signature.
// Anything else (no key, several keys, a private key without its public key) is
// an error that says what was found.
func (t *Token) FindKey(ref KeyRef) (*Key, error) {
	if len(ref.ID) == 0 && ref.Label == "" {
		return nil, t.err("find", "", nil, errors.New("key reference names neither id nor label"))
	}
	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	st, err := t.current("find", ref.Label)
	if err != nil {
		return nil, err
	}
	var s crypto11.Signer
	err = within(t.cfg.OpTimeout, func() error {
		var err error
		s, err = t.findPair(st.ctx, ref)
		if err == nil {
			err = CheckSigner(s, s.Public())
		}
		return err
	})
	if err != nil {
		if tokenGone(err) {
			go t.fail(st.gen, err)
		}
		return nil, t.err("find", ref.Label, nil, explainSessionCount(err, t.cfg.MaxSessions))
	}
	k := &Key{token: t, ref: ref, pub: s.Public()}
	t.addKey(k, st, s)
	return k, nil
}

// addKey registers k for recovery and adds its signer to the current state.
func (t *Token) addKey(k *Key, st *tokenState, s crypto11.Signer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys = append(t.keys, k)
	if t.state.Load() != st {
		// A signer marked the token down meanwhile (recovery itself waits for the
		// module lock we hold). The recovery to come finds this key with the rest.
		return
	}
	signers := make(map[*Key]crypto11.Signer, len(st.signers)+1)
	for key, v := range st.signers {
		signers[key] = v
	}
	signers[k] = s
	t.state.Store(&tokenState{gen: st.gen, ctx: st.ctx, signers: signers})
}

// findPair does the lookup of FindKey on one context.
func (t *Token) findPair(ctx *crypto11.Context, ref KeyRef) (crypto11.Signer, error) {
	label := []byte(ref.Label)
	privs, err := ctx.FindPrivateKeys(ref.ID, label)
	if err != nil {
		return nil, err
	}
	switch {
	case len(privs) == 0:
		return nil, fmt.Errorf("%w: no private key with %s; %s", ErrNotFound, describeRef(ref), t.nearMisses(ctx, ref))
	case len(privs) > 1:
		return nil, fmt.Errorf("%w: %d private keys with %s: %s", ErrAmbiguous, len(privs), describeRef(ref), describeKeys(ctx, privs))
	}
	pairs, err := ctx.FindKeyPairs(ref.ID, label)
	if err != nil {
		return nil, err
	}
	if len(pairs) != 1 {
		return nil, fmt.Errorf("%w: the private key with %s has no public key object with the same CKA_ID", ErrNotFound, describeRef(ref))
	}
	s := pairs[0]
	// crypto11 falls back to matching the public half by CKA_ID alone; insist that
	// both halves carry the same ID and label, so a stray public key cannot pair.
	privAttrs, err := ctx.GetAttributes(s, []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel})
	if err != nil {
		return nil, err
	}
	pubAttrs, err := ctx.GetPubAttributes(s, []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel})
	if err != nil {
		return nil, err
	}
	for _, a := range []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel} {
		if privAttrs[a] == nil || pubAttrs[a] == nil || !bytes.Equal(privAttrs[a].Value, pubAttrs[a].Value) {
			return nil, fmt.Errorf("the public key found for %s does not carry the same CKA_ID and CKA_LABEL as the private key", describeRef(ref))
		}
	}
	if len(privAttrs[crypto11.CkaId].Value) == 0 || len(privAttrs[crypto11.CkaLabel].Value) == 0 {
		return nil, fmt.Errorf("the key with %s lacks a CKA_ID or a CKA_LABEL; Anvil requires both", describeRef(ref))
	}
	return s, nil
}

// nearMisses says which keys match the label alone and the ID alone, to explain
// a failed lookup by both.
func (t *Token) nearMisses(ctx *crypto11.Context, ref KeyRef) string {
	if len(ref.ID) == 0 || ref.Label == "" {
		all, err := ctx.FindPrivateKeysWithAttributes(crypto11.NewAttributeSet())
		if err != nil {
			return "could not list keys: " + err.Error()
		}
		return "the token holds " + describeKeys(ctx, all)
	}
	var parts []string
	byLabel, err := ctx.FindPrivateKeys(nil, []byte(ref.Label))
	if err == nil {
		parts = append(parts, fmt.Sprintf("with label %q alone: %s", ref.Label, describeKeys(ctx, byLabel)))
	}
	byID, err := ctx.FindPrivateKeys(ref.ID, nil)
	if err == nil {
		parts = append(parts, fmt.Sprintf("with id %x alone: %s", ref.ID, describeKeys(ctx, byID)))
	}
	return strings.Join(parts, "; ")
}

func describeRef(ref KeyRef) string {
	var parts []string
	if len(ref.ID) > 0 {
		parts = append(parts, fmt.Sprintf("id %x", ref.ID))
	}
	if ref.Label != "" {
		parts = append(parts, fmt.Sprintf("label %q", ref.Label))
	}
	return strings.Join(parts, " and ")
}

func describeKeys(ctx *crypto11.Context, keys []crypto11.PrivateKey) string {
	if len(keys) == 0 {
		return "no private keys"
	}
	var parts []string
	for _, k := range keys {
		attrs, err := ctx.GetAttributes(k, []crypto11.AttributeType{crypto11.CkaId, crypto11.CkaLabel})
		if err != nil || attrs[crypto11.CkaId] == nil || attrs[crypto11.CkaLabel] == nil {
			parts = append(parts, "(unreadable)")
			continue
		}
		parts = append(parts, fmt.Sprintf("%q (id %x)", attrs[crypto11.CkaLabel].Value, attrs[crypto11.CkaId].Value))
	}
	return fmt.Sprintf("%d private key(s): %s", len(keys), strings.Join(parts, ", "))
}

// CheckSigner signs a random SHA-256 digest with s and verifies the signature
// with pub: the test signature made before a key is trusted, here when a key
// is found or generated, and by package issuance for an issuer key that is
// not a *Key. A *Key's own CheckAgainst also tracks the token's health.
func CheckSigner(s crypto.Signer, pub crypto.PublicKey) error {
	digest := make([]byte, sha256.Size)
	if _, err := rand.Read(digest); err != nil {
		return err
	}
	sig, err := s.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("test signature: %w", err)
	}
	if err := verify(pub, digest, sig, crypto.SHA256); err != nil {
		return fmt.Errorf("test signature does not verify with the public key: %w", err)
	}
	return nil
}

func verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("ECDSA signature invalid")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(p, pss.Hash, digest, sig, pss)
		}
		return rsa.VerifyPKCS1v15(p, opts.HashFunc(), digest, sig)
	}
	return fmt.Errorf("unsupported public key type %T", pub)
}

// samePublicKey reports an error unless a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) error {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("unsupported public key type %T", a)
	}
	if !eq.Equal(b) {
		return errors.New("public keys differ")
	}
	return nil
}

// keyTypeName names a PKCS#11 key type for listings.
func keyTypeName(kt uint) string {
	switch kt {
	case pkcs11.CKK_RSA:
		return "RSA"
	case pkcs11.CKK_EC:
		return "EC"
	case pkcs11.CKK_AES:
		return "AES"
	case pkcs11.CKK_GENERIC_SECRET:
		return "generic-secret"
	}
	return fmt.Sprintf("0x%x", kt)
}
