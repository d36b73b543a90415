package acme

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/storage"
)

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
func (ca *Core) Revoke(ctx context.Context, req RevokeRequest) error {
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
func (ca *Core) revocationAuthority(ctx context.Context, req RevokeRequest, cert *x509.Certificate, rec *storage.Certificate) (string, error) {
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
