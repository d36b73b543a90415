package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/mail"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// KeyID returns the RFC 7638 SHA-256 thumbprint of an account key, base64url:
// how accounts are found by key, and the second half of key authorizations.
func KeyID(key *jose.JSONWebKey) (string, error) {
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// NewAccountRequest is the payload of newAccount (RFC 8555 7.3).
type NewAccountRequest struct {
	Contact                []string        `json:"contact"`
	TermsOfServiceAgreed   bool            `json:"termsOfServiceAgreed"`
	OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
	ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
}

// maxContacts bounds an account's contact list.
const maxContacts = 10

// NewAccount finds the account of key or, unless only an existing one is wanted,
// creates it. created says which happened (201 or 200).
// newAccountURL is where the request was sent, which an External Account
// Binding must name.
func (ca *Core) NewAccount(ctx context.Context, key *jose.JSONWebKey, req NewAccountRequest, remoteIP, newAccountURL string) (*storage.Account, bool, error) {
	keyID, err := KeyID(key)
	if err != nil {
		return nil, false, BadPublicKey("cannot compute the key's thumbprint: %v", err)
	}
	if existing, err := ca.store.GetAccountByKeyID(ctx, keyID); err == nil {
		if existing.Status != StatusValid {
			return nil, false, Unauthorized("the account of this key is %s", existing.Status)
		}
		return existing, false, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, false, ServerInternal(err, "storage error")
	}
	if req.OnlyReturnExisting {
		return nil, false, AccountDoesNotExist("no account exists with this key")
	}
	if err := checkAccountKey(key); err != nil {
		return nil, false, err
	}
	if ca.cfg.TermsOfService != "" && !req.TermsOfServiceAgreed {
		return nil, false, Malformed("you must agree to the terms of service at %s (termsOfServiceAgreed: true)", ca.cfg.TermsOfService)
	}
	contacts, perr := checkContacts(req.Contact)
	if perr != nil {
		return nil, false, perr
	}
	var eab *storage.EABKey
	hasEAB := len(req.ExternalAccountBinding) > 0 && string(req.ExternalAccountBinding) != "null"
	switch {
	case hasEAB:
		if eab, err = ca.verifyEAB(ctx, req.ExternalAccountBinding, key, newAccountURL); err != nil {
			return nil, false, err
		}
	case ca.cfg.ExternalAccountRequired:
		return nil, false, ExternalAccountRequired("this CA requires an external account binding: ask its operators for a key ID and MAC key")
	}
	if err := ca.limitAccounts(ctx, remoteIP); err != nil {
		return nil, false, err
	}
	keyJSON, err := key.MarshalJSON()
	if err != nil {
		return nil, false, BadPublicKey("cannot encode the key: %v", err)
	}
	acct := &storage.Account{
		ID:          newID(),
		KeyID:       keyID,
		Key:         keyJSON,
		Contact:     contacts,
		Status:      StatusValid,
		TermsAgreed: req.TermsOfServiceAgreed,
		CreatedIP:   remoteIP,
		CreatedAt:   ca.now(),
	}
	if eab != nil {
		// Bind first: a key binds at most one account, and losing that race
		// must stop the account from being made. If creating the account then
		// fails, the key stays bound to an account that does not exist and the
		// operator issues a new one; that is the safe way round.
		acct.EABKeyID = eab.ID
		if err := ca.store.BindEABKey(ctx, eab.ID, acct.ID); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return nil, false, Unauthorized("external account key %q is already bound or revoked", eab.ID)
			}
			return nil, false, ServerInternal(err, "storage error binding the EAB key")
		}
	}
	if err := ca.store.CreateAccount(ctx, acct); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			// Another request registered the same key meanwhile: that account it is.
			existing, gerr := ca.store.GetAccountByKeyID(ctx, keyID)
			if gerr == nil {
				return existing, false, nil
			}
		}
		return nil, false, ServerInternal(err, "storage error creating the account")
	}
	ca.log.Info("account created", "audit", "account", "account", acct.ID, "ip", remoteIP)
	if err := ca.record(ctx, audit.AccountCreated, map[string]any{"account": acct.ID, "key": keyID, "ip": remoteIP, "eab": acct.EABKeyID}); err != nil {
		return nil, false, err
	}
	return acct, true, nil
}

// AccountByKeyID returns the account of a key, for JWS with jwk.
func (ca *Core) AccountByKeyID(ctx context.Context, keyID string) (*storage.Account, error) {
	a, err := ca.store.GetAccountByKeyID(ctx, keyID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, AccountDoesNotExist("no account exists with this key")
		}
		return nil, ServerInternal(err, "storage error")
	}
	return a, nil
}

// Account returns an account by ID, for JWS with kid. A deactivated account
// is refused: RFC 8555 7.3.6 says every later request from it is unauthorized.
func (ca *Core) Account(ctx context.Context, id string) (*storage.Account, *jose.JSONWebKey, error) {
	a, err := ca.store.GetAccount(ctx, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil, AccountDoesNotExist("no account %s", id)
		}
		return nil, nil, ServerInternal(err, "storage error")
	}
	if a.Status != StatusValid {
		return nil, nil, Unauthorized("account %s is %s", id, a.Status)
	}
	key, err := ca.keys.parse(a.Key)
	if err != nil {
		return nil, nil, ServerInternal(err, "stored account key does not parse")
	}
	return a, key, nil
}

// keyCache remembers parsed account keys by their JSON: every request signed
// with kid needs its account's key, and parsing a JWK (base64, big integers,
// curve checks) costs more than reading the account. The JSON is immutable
// content, so a cached parse can never be stale.
type keyCache struct {
	mu   sync.Mutex
	keys map[string]*jose.JSONWebKey
}

const keyCacheSize = 10000

func (c *keyCache) parse(raw []byte) (*jose.JSONWebKey, error) {
	c.mu.Lock()
	k, ok := c.keys[string(raw)]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	k = new(jose.JSONWebKey)
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) >= keyCacheSize {
		c.keys = map[string]*jose.JSONWebKey{} // crude, and enough: a full cache starts over
	}
	c.keys[string(raw)] = k
	c.mu.Unlock()
	return k, nil
}

// UpdateAccountRequest is the payload of a POST to an account URL.
type UpdateAccountRequest struct {
	Contact              *[]string `json:"contact"`
	Status               string    `json:"status"`
	TermsOfServiceAgreed bool      `json:"termsOfServiceAgreed"`
}

// UpdateAccount changes contacts, or deactivates the account (RFC 8555 7.3.2,
// 7.3.6). An empty request returns the account unchanged.
func (ca *Core) UpdateAccount(ctx context.Context, acct *storage.Account, req UpdateAccountRequest) (*storage.Account, error) {
	updated := *acct
	switch req.Status {
	case "":
	case StatusDeactivated:
		updated.Status = StatusDeactivated
	default:
		return nil, Malformed("status may only be set to deactivated")
	}
	if req.Contact != nil {
		contacts, perr := checkContacts(*req.Contact)
		if perr != nil {
			return nil, perr
		}
		updated.Contact = contacts
	}
	if req.TermsOfServiceAgreed {
		updated.TermsAgreed = true
	}
	if req.Status == "" && req.Contact == nil && !req.TermsOfServiceAgreed {
		return acct, nil
	}
	if err := ca.store.UpdateAccount(ctx, &updated, StatusValid); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, Unauthorized("account %s is no longer valid", acct.ID)
		}
		return nil, ServerInternal(err, "storage error updating the account")
	}
	if updated.Status == StatusDeactivated {
		ca.log.Info("account deactivated", "audit", "account", "account", acct.ID)
		if err := ca.record(ctx, audit.AccountDeactivated, map[string]any{"account": acct.ID, "by": "account"}); err != nil {
			return nil, err
		}
	}
	return &updated, nil
}

// checkAccountKey accepts the account keys the JWS algorithms allow-list can
// verify, held to the same standard as subscriber keys: RSA 2048/3072/4096 with
// e = 65537, ECDSA P-256/P-384 (and P-521, which ES512 needs) fully validated,
// and Ed25519.
func checkAccountKey(key *jose.JSONWebKey) error {
	if !key.IsPublic() || !key.Valid() {
		return BadPublicKey("the JWK is not a valid public key")
	}
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		if err := issuance.CheckPublicKey(k); err != nil {
			return BadPublicKey("%v", err)
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P521() {
			if _, err := k.ECDH(); err != nil {
				return BadPublicKey("P-521 point is not on the curve")
			}
			return nil
		}
		if err := issuance.CheckPublicKey(k); err != nil {
			return BadPublicKey("%v", err)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return BadPublicKey("Ed25519 key of %d bytes", len(k))
		}
	default:
		return BadPublicKey("unsupported account key type %T", key.Key)
	}
	return nil
}

// checkContacts accepts mailto: URIs with one plain address each, no header
// fields, with a syntactically valid domain.
func checkContacts(contacts []string) ([]string, *Problem) {
	if len(contacts) > maxContacts {
		return nil, InvalidContact("at most %d contacts", maxContacts)
	}
	out := make([]string, 0, len(contacts))
	for _, c := range contacts {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return nil, UnsupportedContact("contact %q: only mailto: URIs are supported", c)
		}
		if strings.ContainsAny(addr, "?,;") || len(c) > 254 {
			return nil, InvalidContact("contact %q must be a single address without header fields", c)
		}
		parsed, err := mail.ParseAddress(addr)
		if err != nil || parsed.Name != "" || parsed.Address != addr {
			return nil, InvalidContact("contact %q is not a valid email address", c)
		}
		at := strings.LastIndexByte(addr, '@')
		if _, err := issuance.NormalizeDNSName(addr[at+1:]); err != nil {
			return nil, InvalidContact("contact %q has an invalid domain", c)
		}
		out = append(out, c)
	}
	return out, nil
}
