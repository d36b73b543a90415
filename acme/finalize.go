package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// Finalize issues the certificate of a ready order (RFC 8555 7.4). The cheap
// checks that can be made on the CSR without trusting it come first, so a bad
// CSR leaves the order ready; then the order moves ready -> processing in one
// conditional update, which exactly one of any number of concurrent finalizes
// wins. The issuance service checks the CSR again on its own.
func (ca *Core) Finalize(ctx context.Context, acct *storage.Account, accountKey *jose.JSONWebKey, orderID string, csrDER []byte) (*storage.Order, error) {
	o, authzs, err := ca.orderAndAuthorizations(ctx, acct, orderID)
	if err != nil {
		return nil, err
	}
	if o.Status != StatusReady {
		return nil, OrderNotReady("order is %s, not ready", o.Status)
	}
	if perr := preflightCSR(csrDER, o, accountKey); perr != nil {
		return nil, perr
	}
	// A signer known to be down fails the finalize here, before the order
	// moves or a serial is reserved: the order stays ready to retry.
	if a, ok := ca.issuer.(signerAvailability); ok {
		if err := a.SignerAvailable(csrDER); err != nil {
			return nil, issuanceProblem(issuance.Classify(err), err)
		}
	}
	if err := ca.recheckCAA(ctx, acct, o, authzs); err != nil {
		return nil, err
	}
	// A ready order is stored as pending: see refreshOrder.
	from := StatusPending
	processing := *o
	processing.Status = StatusProcessing
	processing.CSR = csrDER
	processing.LeaseUntil = ca.now().Add(ca.cfg.ValidationLease)
	processing.UpdatedAt = ca.now()
	if err := ca.store.UpdateOrder(ctx, &processing, from); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, OrderNotReady("order is already being finalized")
		}
		return nil, ServerInternal(err, "storage error finalizing the order")
	}
	return ca.issue(ctx, &processing)
}

// signerAvailability is implemented by an Issuer that knows, without asking
// its HSM, whether it can sign for a CSR now (issuance.Service does).
type signerAvailability interface {
	SignerAvailable(csrDER []byte) error
}

// recheckCAA checks CAA again for names whose validation is older than
// Config.CAARecheckAfter (RFC 8555 leaves when; the Baseline Requirements ask
// for a check within eight hours of issuance). authzs are the order's
// authorizations as the caller just read them.
func (ca *Core) recheckCAA(ctx context.Context, acct *storage.Account, o *storage.Order, authzs []*storage.Authorization) error {
	if !ca.cfg.CAA {
		return nil
	}
	var err error
	now := ca.now()
	looked := false
	for _, a := range authzs {
		if a.Identifier.Type != "dns" {
			continue
		}
		var validated time.Time
		method := ""
		for _, c := range a.Challenges {
			if c.Status == StatusValid && c.Validated.After(validated) {
				validated, method = c.Validated, c.Type
			}
		}
		if now.Sub(validated) <= ca.cfg.CAARecheckAfter {
			continue
		}
		if err := ca.validator.CheckCAA(ctx, a.Identifier.Value, a.Wildcard, ca.cfg.AccountURL(acct.ID), method); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				p := validationProblem(ve)
				p.Detail = "CAA rechecked at finalize: " + p.Detail
				return p
			}
			return ServerInternal(err, "CAA recheck failed")
		}
		looked = true
	}
	if looked {
		// The lookups took time, in which an authorization may have been
		// deactivated: look again before the order moves to processing.
		if authzs, err = ca.store.GetAuthorizations(ctx, o.AuthzIDs); err != nil {
			return ServerInternal(err, "storage error reading authorizations")
		}
		for _, a := range authzs {
			if a.Status != StatusValid {
				return OrderNotReady("authorization for %s is %s", a.Identifier.Value, a.Status)
			}
		}
	}
	return nil
}

// preflightCSR makes the checks the front end can make without trusting the
// CSR's signature: that it parses, names exactly the order's identifiers, and
// does not certify the account key.
func preflightCSR(der []byte, o *storage.Order, accountKey *jose.JSONWebKey) *Problem {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return BadCSR("CSR does not parse: %v", err)
	}
	if k, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && accountKey != nil && k.Equal(accountKey.Key) {
		return BadCSR("the CSR's public key is the account key; use a separate key for the certificate")
	}
	got := issuance.NamesOf(csr.DNSNames, csr.IPAddresses)
	if cn := strings.ToLower(csr.Subject.CommonName); cn != "" && !slices.Contains(got.DNS, cn) && !slices.ContainsFunc(got.IPs, func(ip net.IP) bool { return ip.String() == cn }) {
		return BadCSR("the CSR's common name %q is not among its names", csr.Subject.CommonName)
	}
	var wantDNS []string
	var wantIPs []net.IP
	for _, id := range o.Identifiers {
		switch id.Type {
		case "dns":
			wantDNS = append(wantDNS, id.Value)
		case "ip":
			wantIPs = append(wantIPs, net.ParseIP(id.Value))
		}
	}
	if want := issuance.NamesOf(wantDNS, wantIPs); !got.Equal(want) {
		return BadCSR("the CSR names %s but the order is for %s", identList(got), identList(want))
	}
	return nil
}

// identList lists names as identifiers, "dns:a.example, ip:192.0.2.1".
func identList(n issuance.Names) string {
	var out []string
	for _, d := range n.DNS {
		out = append(out, "dns:"+d)
	}
	for _, ip := range n.IPs {
		out = append(out, "ip:"+ip.String())
	}
	return strings.Join(out, ", ")
}

// issue runs issuance for an order this node holds in processing, and records
// the outcome on the order.
//
// The work runs to its end even if the client hangs up (a certificate signed
// must be recorded), and ends within half the order's lease, so that no other
// node takes the order over while this one may still be signing for it.
func (ca *Core) issue(ctx context.Context, o *storage.Order) (*storage.Order, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ca.cfg.ValidationLease/2)
	defer cancel()
	req := issuance.Request{CSR: o.CSR, Profile: o.Profile, Requester: o.ID}
	for _, id := range o.Identifiers {
		switch id.Type {
		case "dns":
			req.DNSNames = append(req.DNSNames, id.Value)
		case "ip":
			req.IPAddresses = append(req.IPAddresses, net.ParseIP(id.Value))
		}
	}
	issued, err := ca.issuer.Issue(ctx, req)
	if errors.Is(err, issuance.ErrOutcomeUnknown) {
		return ca.awaitOutcome(ctx, o, err)
	}
	if err != nil {
		return nil, ca.issuanceFailed(ctx, o, err)
	}
	done := *o
	done.Status = StatusValid
	done.CertSerial = fmt.Sprintf("%x", issued.Cert.SerialNumber)
	done.LeaseUntil = time.Time{}
	done.UpdatedAt = ca.now()
	if err := ca.store.UpdateOrder(ctx, &done, StatusProcessing); err != nil {
		// The certificate is in the ledger under this order; a node resuming the
		// order adopts it rather than issuing again.
		return nil, ServerInternal(err, "certificate issued but the order could not be updated; it will be completed")
	}
	ca.recent.put(done.CertSerial, issued.DER, issued.Issuer)
	ca.log.Info("order finalized", "audit", "issuance", "account", o.AccountID, "order", o.ID, "serial", done.CertSerial)
	if err := ca.recordIssued(ctx, o, issued); err != nil {
		return nil, err
	}
	return &done, nil
}

// awaitOutcome keeps an order in processing, CSR and all, when a remote signer
// may have issued for it without the answer arriving. The client sees the
// order processing and polls; a node's sweep asks the signer again with the
// same request once the lease below ends, and the signer answers from its
// ledger, so the order gets the one certificate made for it. Resetting the
// order to ready instead could let a second CSR meet the first certificate.
func (ca *Core) awaitOutcome(ctx context.Context, o *storage.Order, cause error) (*storage.Order, error) {
	next := *o
	next.UpdatedAt = ca.now()
	next.LeaseUntil = ca.now().Add(ca.cfg.RetryBackoff)
	if err := ca.store.UpdateOrder(ctx, &next, StatusProcessing); err != nil {
		ca.log.Error("order awaiting the signer's answer not updated; its lease ends anyway", "order", o.ID, "error", err)
	}
	ca.log.Warn("issuance outcome unknown; the order stays processing and is asked again", "order", o.ID, "retry_in", ca.cfg.RetryBackoff, "error", cause.Error())
	return &next, nil
}

// issuanceFailed maps an issuance error to a problem and puts the order where it
// belongs: back to ready when the client or a transient failure is to blame
// (so it can try again), invalid when issuance refused for good. What each
// error means is issuance's one table (issuance.Classes), which the signer's
// wire format reads too.
func (ca *Core) issuanceFailed(ctx context.Context, o *storage.Order, err error) error {
	c := issuance.Classify(err)
	p := issuanceProblem(c, err)
	retry := !c.Final
	next := *o
	next.UpdatedAt = ca.now()
	next.LeaseUntil = time.Time{}
	if retry {
		next.Status = StatusPending // ready again, as derived from its authorizations
		next.CSR = nil
	} else {
		next.Status = StatusInvalid
		next.Error = problemJSON(p)
	}
	if uerr := ca.store.UpdateOrder(ctx, &next, StatusProcessing); uerr != nil {
		ca.log.Error("order state after failed issuance not recorded", "order", o.ID, "error", uerr)
	}
	ca.log.Warn("issuance failed", "order", o.ID, "account", o.AccountID, "error", err.Error())
	if next.Status == StatusInvalid {
		if aerr := ca.record(ctx, audit.OrderFinalized, map[string]any{"order": o.ID, "account": o.AccountID, "status": StatusInvalid, "problem": p.Type}); aerr != nil {
			return aerr
		}
	}
	return p
}

// issuanceProblem is the problem an issuance error of class c shows the
// client: an internal one hides the error (it goes to the log), a transient
// one says when to try again.
func issuanceProblem(c issuance.Class, err error) *Problem {
	switch {
	case c.Transient:
		return ServiceUnavailable(err, 5*time.Second, "%s", c.Detail)
	case c.Problem == "serverInternal":
		return ServerInternal(err, "%s", c.Detail)
	}
	return problem(c.Problem, "%s%v", c.Detail, err)
}

// resumeFinalize completes an order whose finalizing node died: if the ledger
// already holds a certificate for it, that certificate is adopted (one order,
// one certificate); otherwise issuance runs again from the stored CSR.
func (ca *Core) resumeFinalize(ctx context.Context, o *storage.Order) {
	certs, err := ca.store.CertificatesForOrder(ctx, o.ID)
	if err != nil {
		ca.log.Error("resume finalize", "order", o.ID, "error", err)
		return
	}
	for _, c := range certs {
		if c.DER == nil || !certifiesCSR(c.DER, o.CSR) {
			continue
		}
		done := *o
		done.Status = StatusValid
		done.CertSerial = c.Serial
		done.LeaseUntil = time.Time{}
		done.UpdatedAt = ca.now()
		if err := ca.store.UpdateOrder(ctx, &done, StatusProcessing); err != nil {
			ca.log.Error("adopt certificate", "order", o.ID, "error", err)
			return
		}
		ca.log.Info("finalize resumed: certificate adopted", "order", o.ID, "serial", c.Serial)
		if err := ca.record(ctx, audit.OrderFinalized, map[string]any{"order": o.ID, "account": o.AccountID, "status": StatusValid, "serial": c.Serial, "adopted": true}); err != nil {
			ca.log.Error("audit", "order", o.ID, "error", err)
		}
		return
	}
	if len(o.CSR) == 0 {
		next := *o
		next.Status, next.LeaseUntil = StatusPending, time.Time{}
		ca.store.UpdateOrder(ctx, &next, StatusProcessing)
		return
	}
	if _, err := ca.issue(ctx, o); err != nil {
		ca.log.Warn("finalize resumed: issuance failed", "order", o.ID, "error", err)
		return
	}
	ca.log.Info("finalize resumed: issued", "order", o.ID)
}

// certifiesCSR says whether a recorded certificate is for the key of the
// order's CSR: only such a certificate may be adopted when a finalize resumes.
// An order with no CSR left adopts what its ledger holds.
func certifiesCSR(certDER, csrDER []byte) bool {
	if len(csrDER) == 0 {
		return true
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return false
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	return err == nil && bytes.Equal(cert.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo)
}

// Certificate returns an issued certificate and the chains that may be served
// after it, the default first.
func (ca *Core) Certificate(ctx context.Context, serial string) ([]byte, [][][]byte, error) {
	rc, ok := ca.recent.get(serial)
	if !ok {
		c, err := ca.store.GetCertificate(ctx, serial)
		if err != nil {
			return nil, nil, storeErr(err, "certificate")
		}
		if c.DER == nil {
			return nil, nil, NotFound("no such certificate")
		}
		rc = recentCertificate{der: c.DER, issuer: c.Issuer}
	}
	chains, ok := ca.issuer.Chains(rc.issuer)
	if !ok {
		return nil, nil, ServerInternal(fmt.Errorf("no issuer %q", rc.issuer), "issuer of certificate unknown")
	}
	return rc.der, chains, nil
}

// recordIssued writes the audit records of a finalized order and its
// certificate before the order is returned valid.
func (ca *Core) recordIssued(ctx context.Context, o *storage.Order, issued *issuance.Issued) error {
	serial := fmt.Sprintf("%x", issued.Cert.SerialNumber)
	sum := sha256.Sum256(issued.DER)
	names := slices.Clone(issued.Cert.DNSNames)
	for _, ip := range issued.Cert.IPAddresses {
		names = append(names, ip.String())
	}
	if err := ca.record(ctx, audit.CertIssued, map[string]any{
		"serial": serial, "sha256": hex.EncodeToString(sum[:]), "names": names, "issuer": issued.Issuer,
		"profile": issued.Profile, "account": o.AccountID, "order": o.ID, "not_after": issued.Cert.NotAfter.UTC(),
	}); err != nil {
		return err
	}
	return ca.record(ctx, audit.OrderFinalized, map[string]any{"order": o.ID, "account": o.AccountID, "status": StatusValid, "serial": serial})
}
