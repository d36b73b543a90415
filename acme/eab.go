package acme

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/storage"
)

// The EAB object (RFC 8555 7.3.4) is a flattened JWS MAC'd with the external
// account's key over the account's public key.
type eabJWS struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

type eabHeader struct {
	Alg   string `json:"alg"`
	KID   string `json:"kid"`
	URL   string `json:"url"`
	Nonce string `json:"nonce"`
}

// verifyEAB checks an externalAccountBinding and returns the key it names: an
// HS256/384/512 MAC by a known, unrevoked, unbound key, over exactly the
// account key, for the newAccount URL.
func (ca *Core) verifyEAB(ctx context.Context, raw json.RawMessage, accountKey *jose.JSONWebKey, newAccountURL string) (*storage.EABKey, error) {
	var j eabJWS
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, Malformed("externalAccountBinding is not a flattened JWS: %v", err)
	}
	hb, err := base64.RawURLEncoding.DecodeString(j.Protected)
	if err != nil {
		return nil, Malformed("externalAccountBinding: protected header is not base64url")
	}
	var h eabHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, Malformed("externalAccountBinding: protected header: %v", err)
	}
	var newHash func() hash.Hash
	switch h.Alg {
	case "HS256":
		newHash = sha256.New
	case "HS384":
		newHash = sha512.New384
	case "HS512":
		newHash = sha512.New
	default:
		return nil, BadSignatureAlgorithm([]string{"HS256", "HS384", "HS512"}, "externalAccountBinding algorithm %q is not a MAC this CA accepts", h.Alg)
	}
	if h.Nonce != "" {
		return nil, Malformed("externalAccountBinding must not have a nonce")
	}
	if h.URL != newAccountURL {
		return nil, Unauthorized("externalAccountBinding url %q is not the newAccount URL", h.URL)
	}
	key, err := ca.store.GetEABKey(ctx, h.KID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, Unauthorized("unknown external account key %q", h.KID)
		}
		return nil, ServerInternal(err, "storage error reading the EAB key")
	}
	if key.Revoked {
		return nil, Unauthorized("external account key %q is revoked", h.KID)
	}
	if key.AccountID != "" {
		return nil, Unauthorized("external account key %q is already bound to an account", h.KID)
	}
	if key.Algorithm != "" && key.Algorithm != h.Alg {
		return nil, BadSignatureAlgorithm([]string{key.Algorithm}, "external account key %q is for %s, not %s", h.KID, key.Algorithm, h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(j.Signature)
	if err != nil {
		return nil, Malformed("externalAccountBinding: signature is not base64url")
	}
	mac := hmac.New(newHash, key.Key)
	mac.Write([]byte(j.Protected + "." + j.Payload))
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, Unauthorized("externalAccountBinding MAC does not verify")
	}
	payload, err := base64.RawURLEncoding.DecodeString(j.Payload)
	if err != nil {
		return nil, Malformed("externalAccountBinding: payload is not base64url")
	}
	var bound jose.JSONWebKey
	if err := bound.UnmarshalJSON(payload); err != nil {
		return nil, Malformed("externalAccountBinding payload is not a JWK: %v", err)
	}
	boundID, err1 := KeyID(&bound)
	accountID, err2 := KeyID(accountKey)
	if err1 != nil || err2 != nil || boundID != accountID {
		return nil, Unauthorized("externalAccountBinding binds a key other than the account's")
	}
	return key, nil
}

// checkEABPolicy applies the allowed name suffixes of the account's external
// account key, if it has one and the key has any.
func (ca *Core) checkEABPolicy(ctx context.Context, acct *storage.Account, idents []checkedIdent) error {
	if acct.EABKeyID == "" {
		return nil
	}
	key, err := ca.store.GetEABKey(ctx, acct.EABKeyID)
	if err != nil {
		return ServerInternal(err, "storage error reading the account's EAB key")
	}
	if len(key.AllowedSuffixes) == 0 {
		return nil
	}
	for _, id := range idents {
		if id.ident.Type != "dns" {
			return RejectedIdentifier("the external account of this account allows DNS names only")
		}
		base := strings.TrimPrefix(id.ident.Value, "*.")
		ok := false
		for _, suf := range key.AllowedSuffixes {
			suf = strings.ToLower(strings.TrimPrefix(suf, "."))
			if base == suf || strings.HasSuffix(base, "."+suf) {
				ok = true
				break
			}
		}
		if !ok {
			return RejectedIdentifier("%s is outside the names this account's external account may order (%s)", id.ident.Value, strings.Join(key.AllowedSuffixes, ", "))
		}
	}
	return nil
}
