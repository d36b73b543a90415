package acme

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// RenewalInfo is the suggested renewal window of a certificate (RFC 9773).
type RenewalInfo struct {
	Start, End time.Time
	RetryAfter time.Duration
}

// lookupCertID finds the certificate an RFC 9773 identifier names.
func (ca *Core) lookupCertID(ctx context.Context, certID string) (*storage.Certificate, *x509.Certificate, error) {
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
func (ca *Core) RenewalInfo(ctx context.Context, certID string) (*RenewalInfo, error) {
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
func (ca *Core) checkReplaces(ctx context.Context, acct *storage.Account, certID string, idents []checkedIdent) error {
	rec, cert, err := ca.lookupCertID(ctx, certID)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Condition == Missing {
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
			p := problem("alreadyReplaced", "certificate %s was already replaced by order %s", certID, other.ID)
			return p
		}
	}
	return nil
}
