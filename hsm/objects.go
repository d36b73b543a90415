package hsm

import (
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
)

// ObjectInfo describes a key object on a token, for operators (`anvil hsm objects`)
// and for tests that check how keys were generated. It never holds key material.
type ObjectInfo struct {
	Class            string // "private", "public", "secret", "certificate", "data"
	Label            string
	ID               []byte
	KeyType          string // "EC", "RSA", ...
	Size             string // "P-256", "2048 bits", ...
	Private          bool   // CKA_PRIVATE: visible only after login
	Sensitive        bool
	AlwaysSensitive  bool
	Extractable      bool
	NeverExtractable bool
	Local            bool // generated on the token
	Sign, Decrypt    bool
	Unwrap, Derive   bool
}

// withRawSession opens a read-only raw session on this token's slot. The module
// is initialised by this token's crypto11 context, so the session shares its
// login and sees private objects. Callers hold t.mod.mu.
func (t *Token) withRawSession(f func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	return t.mod.withRaw(func(p *pkcs11.Ctx) error {
		tokens, err := listTokens(p)
		if err != nil {
			return err
		}
		slot, found := uint(0), false
		for _, ti := range tokens {
			if (t.cfg.TokenLabel != "" && ti.Label == t.cfg.TokenLabel) ||
				(t.cfg.TokenSerial != "" && ti.Serial == t.cfg.TokenSerial) {
				slot, found = ti.Slot, true
				break
			}
		}
		if !found {
			return fmt.Errorf("%w: token is no longer listed", ErrUnavailable)
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("open session: %w", err)
		}
		defer p.CloseSession(sh)
		return f(p, sh)
	})
}

func findObjects(p *pkcs11.Ctx, sh pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(sh, template); err != nil {
		return nil, fmt.Errorf("find objects: %w", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := p.FindObjects(sh, 100)
		if err != nil {
			_ = p.FindObjectsFinal(sh)
			return nil, fmt.Errorf("find objects: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := p.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("find objects: %w", err)
	}
	return all, nil
}

// refuseExisting returns ErrExists if any object on the token carries label or
// id. Callers hold t.mod.mu.
func (t *Token) refuseExisting(label string, id []byte) error {
	var byLabel, byID int
	err := t.withRawSession(func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := findObjects(p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
		if err != nil {
			return err
		}
		byLabel = len(hs)
		hs, err = findObjects(p, sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
		byID = len(hs)
		return err
	})
	switch {
	case err != nil:
		return t.err("generate", label, nil, err)
	case byLabel > 0:
		return t.err("generate", label, ErrExists, fmt.Errorf("%d object(s) on the token already have label %q", byLabel, label))
	case byID > 0:
		return t.err("generate", label, ErrExists, fmt.Errorf("%d object(s) on the token already have id %x", byID, id))
	}
	return nil
}

// Objects lists every object on the token with its flags, private ones included
// (the token is logged in).
func (t *Token) Objects() ([]ObjectInfo, error) {
	t.mod.mu.Lock()
	defer t.mod.mu.Unlock()
	if _, err := t.current("list objects", ""); err != nil {
		return nil, err
	}
	var out []ObjectInfo
	err := t.withRawSession(func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		hs, err := findObjects(p, sh, nil)
		if err != nil {
			return err
		}
		for _, h := range hs {
			out = append(out, describeObject(p, sh, h))
		}
		return nil
	})
	if err != nil {
		return nil, t.err("list objects", "", nil, err)
	}
	return out, nil
}

// describeObject reads attributes one at a time: a token answers
// CKR_ATTRIBUTE_TYPE_INVALID for the whole call if one of them does not apply.
func describeObject(p *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) ObjectInfo {
	get := func(a uint) []byte {
		attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(a, nil)})
		if err != nil || len(attrs) != 1 {
			return nil
		}
		return attrs[0].Value
	}
	flag := func(a uint) bool {
		v := get(a)
		return len(v) == 1 && v[0] != 0
	}
	ulong := func(a uint) (uint, bool) {
		v := get(a)
		if len(v) == 0 {
			return 0, false
		}
		var n uint
		for i := len(v) - 1; i >= 0; i-- { // CK_ULONG in host (little-endian) order
			n = n<<8 | uint(v[i])
		}
		return n, true
	}
	info := ObjectInfo{Label: string(get(pkcs11.CKA_LABEL)), ID: get(pkcs11.CKA_ID)}
	class, _ := ulong(pkcs11.CKA_CLASS)
	switch class {
	case pkcs11.CKO_PRIVATE_KEY:
		info.Class = "private"
	case pkcs11.CKO_PUBLIC_KEY:
		info.Class = "public"
	case pkcs11.CKO_SECRET_KEY:
		info.Class = "secret"
	case pkcs11.CKO_CERTIFICATE:
		info.Class = "certificate"
	case pkcs11.CKO_DATA:
		info.Class = "data"
	default:
		info.Class = fmt.Sprintf("0x%x", class)
	}
	if kt, ok := ulong(pkcs11.CKA_KEY_TYPE); ok {
		info.KeyType = keyTypeName(kt)
		switch kt {
		case pkcs11.CKK_RSA:
			if bits, ok := ulong(pkcs11.CKA_MODULUS_BITS); ok {
				info.Size = fmt.Sprintf("%d bits", bits)
			} else if mod := get(pkcs11.CKA_MODULUS); len(mod) > 0 {
				info.Size = fmt.Sprintf("%d bits", new(big.Int).SetBytes(mod).BitLen())
			}
		case pkcs11.CKK_EC:
			info.Size = curveName(get(pkcs11.CKA_EC_PARAMS))
		}
	}
	info.Private = flag(pkcs11.CKA_PRIVATE)
	info.Sensitive = flag(pkcs11.CKA_SENSITIVE)
	info.AlwaysSensitive = flag(pkcs11.CKA_ALWAYS_SENSITIVE)
	info.Extractable = flag(pkcs11.CKA_EXTRACTABLE)
	info.NeverExtractable = flag(pkcs11.CKA_NEVER_EXTRACTABLE)
	info.Local = flag(pkcs11.CKA_LOCAL)
	info.Sign = flag(pkcs11.CKA_SIGN)
	info.Decrypt = flag(pkcs11.CKA_DECRYPT)
	info.Unwrap = flag(pkcs11.CKA_UNWRAP)
	info.Derive = flag(pkcs11.CKA_DERIVE)
	return info
}

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

func curveName(params []byte) string {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		return "unknown curve"
	}
	switch {
	case oid.Equal(oidP256):
		return "P-256"
	case oid.Equal(oidP384):
		return "P-384"
	case oid.Equal(oidP521):
		return "P-521"
	}
	return oid.String()
}

// Random reads n bytes from the token's random number generator, for key IDs and
// ceremony serials.
func (t *Token) Random(n int) ([]byte, error) {
	st, err := t.current("generate random", "")
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	rng, err := st.ctx.NewRandomReader()
	if err == nil {
		_, err = io.ReadFull(rng, b)
	}
	if err != nil {
		if tokenGone(err) {
			t.fail(st.gen, err)
			return nil, t.err("generate random", "", ErrUnavailable, err)
		}
		return nil, t.err("generate random", "", nil, err)
	}
	return b, nil
}
