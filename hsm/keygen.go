package hsm

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Algorithm names a key type Anvil generates on a token.
type Algorithm string

// The key types Anvil generates. RSA keys use the public exponent 65537.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	ECDSAP384 Algorithm = "ecdsa-p384"
	RSA2048   Algorithm = "rsa-2048"
	RSA3072   Algorithm = "rsa-3072"
	RSA4096   Algorithm = "rsa-4096"
)

// Algorithms lists every supported Algorithm.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}

// ParseAlgorithm checks a configured algorithm name.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown key algorithm %q (want one of %v)", s, Algorithms)
}

// KeySpec describes a key pair to generate.
type KeySpec struct {
	Label     string
	ID        []byte // CKA_ID; when empty, 8 bytes from the token's random generator
	Algorithm Algorithm
}

// KeyIDLength is the length of generated CKA_IDs.
const KeyIDLength = 8

// GenerateKey generates a key pair on the token with explicit templates: both
// halves are token objects with CKA_ID and CKA_LABEL; the private half is
// private, sensitive, never extractable and may only sign (no decrypt, unwrap or
// derive, which SoftHSM2's defaults would otherwise allow). A label or ID that any
// object on the token already has is refused with ErrExists.
func (t *Token) GenerateKey(spec KeySpec) (*Key, error) {
	if spec.Label == "" {
		return nil, t.err("generate", "", nil, errors.New("key label is empty"))
	}
	if _, err := ParseAlgorithm(string(spec.Algorithm)); err != nil {
		return nil, t.err("generate", spec.Label, nil, err)
	}
	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	st, err := t.current("generate", spec.Label)
	if err != nil {
		return nil, err
	}
	id := spec.ID
	if len(id) == 0 {
		id = make([]byte, KeyIDLength)
		rng, err := st.ctx.NewRandomReader()
		if err == nil {
			_, err = io.ReadFull(rng, id)
		}
		if err != nil {
			return nil, t.err("generate", spec.Label, nil, fmt.Errorf("random key id from the token: %w", err))
		}
	}
	if err := t.refuseExisting(spec.Label, id); err != nil {
		return nil, err
	}

	public, private, err := templates(id, spec.Label)
	if err != nil {
		return nil, t.err("generate", spec.Label, nil, err)
	}
	var s crypto11.Signer
	err = within(t.cfg.OpTimeout*4, func() error { // RSA-4096 generation is slow on real HSMs
		var err error
		switch spec.Algorithm {
		case ECDSAP256:
			s, err = st.ctx.GenerateECDSAKeyPairWithAttributes(public, private, elliptic.P256())
		case ECDSAP384:
			s, err = st.ctx.GenerateECDSAKeyPairWithAttributes(public, private, elliptic.P384())
		case RSA2048:
			s, err = st.ctx.GenerateRSAKeyPairWithAttributes(public, private, 2048)
		case RSA3072:
			s, err = st.ctx.GenerateRSAKeyPairWithAttributes(public, private, 3072)
		case RSA4096:
			s, err = st.ctx.GenerateRSAKeyPairWithAttributes(public, private, 4096)
		}
		if err == nil {
			err = CheckSigner(s, s.Public())
		}
		return err
	})
	if err != nil {
		return nil, t.err("generate", spec.Label, nil, err)
	}
	k := &Key{token: t, ref: KeyRef{ID: id, Label: spec.Label}, pub: s.Public()}
	t.addKey(k, st, s)
	return k, nil
}

// templates returns the explicit attribute templates for both halves.
func templates(id []byte, label string) (public, private crypto11.AttributeSet, err error) {
	public = crypto11.NewAttributeSet()
	private = crypto11.NewAttributeSet()
	set := func(s crypto11.AttributeSet, attrs map[uint]any) {
		for k, v := range attrs {
			if err == nil {
				err = s.Set(k, v)
			}
		}
	}
	set(public, map[uint]any{
		pkcs11.CKA_ID:      id,
		pkcs11.CKA_LABEL:   label,
		pkcs11.CKA_TOKEN:   true,
		pkcs11.CKA_PRIVATE: false,
		pkcs11.CKA_VERIFY:  true,
		pkcs11.CKA_ENCRYPT: false,
		pkcs11.CKA_WRAP:    false,
		pkcs11.CKA_DERIVE:  false,
	})
	set(private, map[uint]any{
		pkcs11.CKA_ID:          id,
		pkcs11.CKA_LABEL:       label,
		pkcs11.CKA_TOKEN:       true,
		pkcs11.CKA_PRIVATE:     true,
		pkcs11.CKA_SENSITIVE:   true,
		pkcs11.CKA_EXTRACTABLE: false,
		pkcs11.CKA_SIGN:        true,
		pkcs11.CKA_DECRYPT:     false,
		pkcs11.CKA_UNWRAP:      false,
		pkcs11.CKA_DERIVE:      false,
	})
	return public, private, err
}
