package acme

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/storage"
)

// KeyChange replaces an account's key (RFC 8555 7.3.5). The api has checked the
// outer JWS (signed by the current key, with kid) and the inner one (signed by
// newKey, carried in its jwk, with the same url and no nonce); this checks what
// the inner payload says: that it names this account and its current key.
func (ca *CA) KeyChange(ctx context.Context, acct *storage.Account, currentKey, newKey *jose.JSONWebKey, payloadAccount string, payloadOldKey json.RawMessage) (*storage.Account, error) {
	if payloadAccount != ca.cfg.AccountURL(acct.ID) {
		return nil, Malformed("the inner payload's account %q is not the account signing the request", payloadAccount)
	}
	var oldKey jose.JSONWebKey
	if err := oldKey.UnmarshalJSON(payloadOldKey); err != nil {
		return nil, Malformed("oldKey: %v", err)
	}
	oldID, err := KeyID(&oldKey)
	if err != nil || oldID != acct.KeyID {
		return nil, Malformed("oldKey is not the account's current key")
	}
	if err := checkAccountKey(newKey); err != nil {
		return nil, err
	}
	newID, err := KeyID(newKey)
	if err != nil {
		return nil, BadPublicKey("cannot compute the new key's thumbprint: %v", err)
	}
	if newID == acct.KeyID {
		return nil, Malformed("the new key is the current key")
	}
	if other, err := ca.store.GetAccountByKeyID(ctx, newID); err == nil {
		return nil, Conflict(ca.cfg.AccountURL(other.ID), "the new key is already the key of an account")
	}
	newJSON, err := newKey.MarshalJSON()
	if err != nil {
		return nil, BadPublicKey("cannot encode the new key: %v", err)
	}
	if err := ca.store.RolloverAccountKey(ctx, acct.ID, acct.KeyID, newID, newJSON); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			if other, gerr := ca.store.GetAccountByKeyID(ctx, newID); gerr == nil {
				return nil, Conflict(ca.cfg.AccountURL(other.ID), "the new key is already the key of an account")
			}
			return nil, Malformed("the account's key changed meanwhile")
		}
		return nil, ServerInternal(err, "storage error rolling over the key")
	}
	updated := *acct
	updated.KeyID, updated.Key = newID, newJSON
	ca.log.Info("account key rolled over", "audit", "account", "account", acct.ID, "old_key", acct.KeyID, "new_key", newID)
	if err := ca.record(ctx, audit.AccountKeyChanged, map[string]any{"account": acct.ID, "old_key": acct.KeyID, "new_key": newID}); err != nil {
		return nil, err
	}
	return &updated, nil
}

// ListOrders pages through an account's orders, newest first (RFC 8555
// 7.1.2.1).
func (ca *CA) ListOrders(ctx context.Context, acct *storage.Account, cursor string) ([]string, string, error) {
	ids, next, err := ca.store.ListOrderIDs(ctx, acct.ID, cursor, ca.cfg.OrdersPerPage)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, "", Malformed("bad cursor")
		}
		return nil, "", ServerInternal(err, "storage error listing orders")
	}
	return ids, next, nil
}

// PreAuthorize creates a pending authorization for one identifier outside an
// order (RFC 8555 7.4.1), where the configuration allows it.
func (ca *CA) PreAuthorize(ctx context.Context, acct *storage.Account, ident Identifier) (*storage.Authorization, error) {
	if !ca.cfg.PreAuthorization {
		return nil, Malformed("pre-authorization is not offered here")
	}
	return ca.preAuthorize(ctx, acct, ident)
}

// preAuthorize is PreAuthorize without the configuration check: the ACME v1
// front end (LegacyAuthorize) has its own switch.
func (ca *CA) preAuthorize(ctx context.Context, acct *storage.Account, ident Identifier, extraTypes ...string) (*storage.Authorization, error) {
	checked, perr := ca.checkIdentifiers([]Identifier{ident})
	if perr != nil {
		return nil, perr
	}
	if checked[0].wildcard {
		return nil, RejectedIdentifier("a wildcard cannot be pre-authorized (RFC 8555 7.4.1)")
	}
	if err := ca.checkEABPolicy(ctx, acct, checked); err != nil {
		return nil, err
	}
	now := ca.now()
	authz, perr := ca.newAuthorization(acct.ID, checked[0], now)
	if perr != nil {
		return nil, perr
	}
	for _, t := range extraTypes {
		// A token of its own: the challenge's file is the token itself, so a
		// shared one would sit at the same path as http-01's.
		authz.Challenges = append(authz.Challenges, &storage.Challenge{
			ID: newID(), AuthzID: authz.ID, Type: t, Token: newToken(), Status: StatusPending, UpdatedAt: now,
		})
	}
	if err := ca.store.CreateAuthorization(ctx, authz); err != nil {
		return nil, ServerInternal(err, "storage error creating the authorization")
	}
	return authz, nil
}

// reasonCodes are the revocation reasons a subscriber may give (RFC 5280
// 5.3.1); cACompromise, certificateHold, privilegeWithdrawn and aACompromise
// are not theirs to claim.
var reasonCodes = map[int]string{0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded", 5: "cessationOfOperation"}

// RevokeRequest is a revocation (RFC 8555 7.6): by an account (kid), or by the
// certificate's own key (jwk).
type RevokeRequest struct {
	CertDER []byte
	Reason  *int
	Account *storage.Account // nil when signed with the certificate's key
	JWK     *jose.JSONWebKey // the key that signed, when not an account
}

// Revoke revokes a certificate if the requester may: the account it was issued
// to, an account that holds valid authorizations for every name in it, or
// whoever holds its private key.
func (ca *CA) Revoke(ctx context.Context, req RevokeRequest) error {
	cert, err := x509.ParseCertificate(req.CertDER)
	if err != nil {
		return Malformed("certificate does not parse: %v", err)
	}
	reason := 0
	if req.Reason != nil {
		reason = *req.Reason
	}
	if _, ok := reasonCodes[reason]; !ok {
		return BadRevocationReason("reason %d is not one a subscriber may give (0, 1, 3, 4 or 5)", reason)
	}
	serial := fmt.Sprintf("%x", cert.SerialNumber)
	rec, err := ca.store.GetCertificate(ctx, serial)
	if err != nil || rec.DER == nil || string(rec.DER) != string(req.CertDER) {
		return NotFound("this CA did not issue that certificate")
	}
	by, err := ca.revocationAuthority(ctx, req, cert, rec)
	if err != nil {
		return err
	}
	if !rec.RevokedAt.IsZero() {
		return AlreadyRevoked("certificate %s was revoked at %s", serial, rec.RevokedAt.Format(time.RFC3339))
	}
	if err := ca.store.RevokeCertificate(ctx, serial, ca.now(), reason); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return AlreadyRevoked("certificate %s is already revoked", serial)
		}
		return ServerInternal(err, "storage error revoking")
	}
	ca.log.Info("certificate revoked", "audit", "revocation", "serial", serial, "reason", reasonCodes[reason], "by", by)
	if err := ca.record(ctx, audit.CertRevoked, map[string]any{"serial": serial, "issuer": rec.Issuer, "reason": reasonCodes[reason], "by": by}); err != nil {
		return err
	}
	if ca.cfg.OnRevoke != nil {
		ca.cfg.OnRevoke(rec.Issuer)
	}
	return nil
}

// revocationAuthority says who may revoke, or refuses.
func (ca *CA) revocationAuthority(ctx context.Context, req RevokeRequest, cert *x509.Certificate, rec *storage.Certificate) (string, error) {
	if req.Account == nil {
		if req.JWK == nil {
			return "", Unauthorized("a revocation must be signed by an account or by the certificate's key")
		}
		if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(req.JWK.Key) {
			return "", Unauthorized("the request is signed by a key other than the certificate's")
		}
		return "certificate key", nil
	}
	if rec.OrderID != "" {
		if o, err := ca.store.GetOrder(ctx, rec.OrderID); err == nil && o.AccountID == req.Account.ID {
			return "account " + req.Account.ID + " (issued to it)", nil
		}
	}
	// Another account may revoke if it has proven control of every name.
	until := ca.now()
	var names []Identifier
	for _, n := range cert.DNSNames {
		names = append(names, Identifier{Type: "dns", Value: strings.ToLower(n)})
	}
	for _, ip := range cert.IPAddresses {
		names = append(names, Identifier{Type: "ip", Value: ip.String()})
	}
	for _, id := range names {
		wildcard := strings.HasPrefix(id.Value, "*.")
		base := Identifier{Type: id.Type, Value: strings.TrimPrefix(id.Value, "*.")}
		if _, err := ca.store.FindValidAuthorization(ctx, req.Account.ID, base, wildcard, until); err != nil {
			if wildcard {
				// A wildcard is also covered by a valid authorization for the base name.
				if _, err := ca.store.FindValidAuthorization(ctx, req.Account.ID, base, false, until); err == nil {
					continue
				}
			}
			return "", Unauthorized("the account holds no valid authorization for %s, and the certificate was not issued to it", id.Value)
		}
	}
	return "account " + req.Account.ID + " (authorized for every name)", nil
}

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
func (ca *CA) verifyEAB(ctx context.Context, raw json.RawMessage, accountKey *jose.JSONWebKey, newAccountURL string) (*storage.EABKey, error) {
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
func (ca *CA) checkEABPolicy(ctx context.Context, acct *storage.Account, idents []checkedIdent) error {
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

// RenewalInfo is the suggested renewal window of a certificate (RFC 9773).
type RenewalInfo struct {
	Start, End time.Time
	RetryAfter time.Duration
}

// lookupCertID finds the certificate an RFC 9773 identifier names.
func (ca *CA) lookupCertID(ctx context.Context, certID string) (*storage.Certificate, *x509.Certificate, error) {
	akiPart, serialPart, ok := strings.Cut(certID, ".")
	aki, err1 := base64.RawURLEncoding.DecodeString(akiPart)
	serialBytes, err2 := base64.RawURLEncoding.DecodeString(serialPart)
	if !ok || err1 != nil || err2 != nil || len(aki) == 0 || len(serialBytes) == 0 {
		return nil, nil, Malformed("%q is not a certificate identifier (base64url AKI . base64url serial)", certID)
	}
	serial := fmt.Sprintf("%x", new(big.Int).SetBytes(serialBytes))
	rec, err := ca.store.GetCertificate(ctx, serial)
	if err != nil || rec.DER == nil {
		return nil, nil, NotFound("no certificate %s", certID)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, nil, ServerInternal(err, "stored certificate does not parse")
	}
	if string(cert.AuthorityKeyId) != string(aki) {
		return nil, nil, NotFound("no certificate %s", certID)
	}
	return rec, cert, nil
}

// RenewalInfo suggests when to renew: in the window from two thirds to five
// sixths of the certificate's life, or at once (a window already open) if it
// has been revoked.
func (ca *CA) RenewalInfo(ctx context.Context, certID string) (*RenewalInfo, error) {
	rec, cert, err := ca.lookupCertID(ctx, certID)
	if err != nil {
		return nil, err
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	info := &RenewalInfo{
		Start:      cert.NotBefore.Add(life * 2 / 3),
		End:        cert.NotBefore.Add(life * 5 / 6),
		RetryAfter: 6 * time.Hour,
	}
	if !rec.RevokedAt.IsZero() {
		now := ca.now()
		info.Start, info.End = now.Add(-time.Hour), now
	}
	return info, nil
}

// checkReplaces checks the replaces field of a new order (RFC 9773 5): the
// certificate exists, was issued to this account, shares a name with the
// order, and has not been replaced by another order already.
func (ca *CA) checkReplaces(ctx context.Context, acct *storage.Account, certID string, idents []checkedIdent) error {
	rec, cert, err := ca.lookupCertID(ctx, certID)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Status == 404 {
			return Malformed("replaces: %s", p.Detail)
		}
		return err
	}
	o, err := ca.store.GetOrder(ctx, rec.OrderID)
	if err != nil || o.AccountID != acct.ID {
		return Unauthorized("replaces names a certificate that was not issued to this account")
	}
	shared := false
	for _, id := range idents {
		for _, n := range cert.DNSNames {
			shared = shared || strings.EqualFold(n, id.ident.Value)
		}
		for _, ip := range cert.IPAddresses {
			shared = shared || ip.String() == id.ident.Value
		}
	}
	if !shared {
		return Malformed("replaces names a certificate that shares no identifier with this order")
	}
	others, err := ca.store.OrdersReplacing(ctx, certID)
	if err != nil {
		return ServerInternal(err, "storage error checking replaces")
	}
	for _, other := range others {
		if other.Status != StatusInvalid {
			p := problem("alreadyReplaced", 409, "certificate %s was already replaced by order %s", certID, other.ID)
			return p
		}
	}
	return nil
}

// ReasonCode returns the code of a revocation reason a subscriber or operator
// may give, by its RFC 5280 name.
func ReasonCode(name string) (int, bool) {
	for code, n := range reasonCodes {
		if n == name {
			return code, true
		}
	}
	return 0, false
}

// ReasonName returns the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	if n, ok := reasonCodes[code]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", code)
}
