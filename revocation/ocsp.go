package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// maxOCSPRequest bounds a request, POSTed or in a GET path: a real one is
// about 100 bytes.
const maxOCSPRequest = 4 << 10

// maxOCSPGETPath bounds the escaped GET path below the OCSP prefix: the
// slash and the base64 of a maxOCSPRequest request with every character
// percent-encoded. Longer paths are refused before anything is decoded.
const maxOCSPGETPath = 1 + (maxOCSPRequest+2)/3*4*3

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// cachedResponse is a signed response and what it said, so that a status
// change is noticed and the response signed again at once.
type cachedResponse struct {
	der       []byte
	status    int
	revokedAt time.Time
	thisUpd   time.Time
	nextUpd   time.Time
	refreshAt time.Time
}

// ServeOCSP answers an OCSP request by GET (base64 in the path, RFC 5019) or
// POST (application/ocsp-request). A request that does not parse gets
// malformedRequest; one for an issuer this CA does not have, or for a serial
// this CA never issued, gets unauthorized (RFC 6960 2.3). Those answers are
// the fixed, unsigned error responses: no request from a stranger costs an
// HSM signature. A request nonce is ignored (RFC 8954 allows it): every
// answer comes from the cache of pre-signed responses.
func (p *Publisher) ServeOCSP(w http.ResponseWriter, r *http.Request, prefix string) {
	var raw []byte
	var err error
	switch r.Method {
	case http.MethodGet:
		path := strings.TrimPrefix(r.URL.EscapedPath(), prefix)
		if len(path) > maxOCSPGETPath {
			err = fmt.Errorf("GET path of %d bytes; at most %d", len(path), maxOCSPGETPath)
		} else if raw, err = decodeGETRequest(path); err == nil && len(raw) > maxOCSPRequest {
			err = errors.New("request too large")
		}
	case http.MethodPost:
		raw, err = io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
		if err == nil && len(raw) > maxOCSPRequest {
			err = errors.New("request too large")
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "OCSP takes GET and POST", http.StatusMethodNotAllowed)
		return
	}
	if err != nil {
		p.ocspError(w, ocsp.MalformedRequestErrorResponse, err)
		return
	}
	resp, cached, hit, err := p.Respond(r.Context(), raw)
	switch {
	case errors.Is(err, errMalformed):
		p.ocspError(w, ocsp.MalformedRequestErrorResponse, err)
		return
	case errors.Is(err, errUnknownIssuer), errors.Is(err, errUnknownSerial):
		p.ocspError(w, ocsp.UnauthorizedErrorResponse, err)
		return
	case err != nil:
		p.log.Error("OCSP", "error", err)
		p.ocspError(w, ocsp.InternalErrorErrorResponse, err)
		return
	}
	p.metrics.OCSPRequests.Add(1)
	if hit {
		p.metrics.OCSPCacheHits.Add(1)
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	if r.Method == http.MethodGet && cached != nil {
		// RFC 5019 6: let caches keep the response until shortly before its
		// nextUpdate.
		maxAge := int(time.Until(cached.nextUpd).Seconds())
		if maxAge < 0 {
			maxAge = 0
		}
		sum := sha256.Sum256(resp)
		w.Header().Set("Cache-Control", "public, no-transform, must-revalidate, max-age="+strconv.Itoa(maxAge))
		w.Header().Set("Last-Modified", cached.thisUpd.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", cached.nextUpd.UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Write(resp)
}

func (p *Publisher) ocspError(w http.ResponseWriter, body []byte, err error) {
	p.metrics.OCSPErrors.Add(1)
	p.log.Debug("OCSP request refused", "error", err)
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// decodeGETRequest reads the base64 request of a GET path: URL-encoded
// standard base64, as RFC 5019 says, or base64url, as some clients send.
func decodeGETRequest(path string) ([]byte, error) {
	path = strings.TrimPrefix(path, "/")
	s, err := url.PathUnescape(path)
	if err != nil {
		return nil, err
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

var (
	errMalformed     = errors.New("malformed OCSP request")
	errUnknownIssuer = errors.New("OCSP request for an issuer this CA does not have")
	errUnknownSerial = errors.New("OCSP request for a certificate this issuer did not issue")
)

// ocspRequest is the part of RFC 6960 4.1.1 Anvil reads beyond what
// x/crypto/ocsp exposes: the request extensions, for the nonce.
type ocspRequest struct {
	TBSRequest struct {
		Version       int           `asn1:"explicit,tag:0,default:0,optional"`
		RequestorName asn1.RawValue `asn1:"explicit,tag:1,optional"`
		RequestList   []asn1.RawValue
		Extensions    []struct {
			ID       asn1.ObjectIdentifier
			Critical bool `asn1:"optional"`
			Value    []byte
		} `asn1:"explicit,tag:2,optional"`
	}
	Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

// Respond returns the response to a DER request, the cache entry it came from
// or went into, and whether it was a hit. It signs only for a certificate this
// CA issued, at most once per certificate, CertID hash and status every half
// validity period, however many ask and whatever nonces they send; anything
// else is an error (errMalformed, errUnknownIssuer, errUnknownSerial) for which
// ServeOCSP has a fixed, unsigned answer.
func (p *Publisher) Respond(ctx context.Context, raw []byte) ([]byte, *cachedResponse, bool, error) {
	req, err := parseRequest(raw)
	if err != nil {
		return nil, nil, false, err
	}
	st := p.issuerFor(req)
	if st == nil {
		return nil, nil, false, errUnknownIssuer
	}
	entry, err := p.status(ctx, st, req.SerialNumber)
	if err != nil {
		return nil, nil, false, err
	}
	if entry.Status == issuance.OCSPUnknown {
		// Not signed: a signed "unknown" for every number anyone cares to
		// send would be HSM work on demand.
		return nil, nil, false, fmt.Errorf("%w: serial %x", errUnknownSerial, req.SerialNumber)
	}
	entry.CertIDHash = req.HashAlgorithm
	key := fmt.Sprintf("%x/%d", req.SerialNumber, req.HashAlgorithm)
	cachedFor := func() *cachedResponse {
		if c, ok := st.responses.Load(key); ok {
			cr := c.(*cachedResponse)
			if cr.status == entry.Status && cr.revokedAt.Equal(entry.RevokedAt) && p.cfg.Now().Before(cr.refreshAt) {
				return cr
			}
		}
		return nil
	}
	if cr := cachedFor(); cr != nil {
		return cr.der, cr, true, nil
	}
	// One signature per certificate and status however many ask at once. The
	// status is in the flight's key: a request that has read "revoked" must
	// not be handed the "good" response of a flight started just before.
	flightKey := fmt.Sprintf("%s/%s/%d/%d", st.iss.Name(), key, entry.Status, entry.RevokedAt.UnixNano())
	v, err, _ := p.flight.Do(flightKey, func() (any, error) {
		// A flight for this response may have ended between the look above
		// and this one starting: its response is in the cache now.
		if cr := cachedFor(); cr != nil {
			return cr, nil
		}
		// The signature serves every request waiting on the flight: the
		// first one's client hanging up must not fail the others (the
		// token's own deadline bounds the call).
		der, err := st.ocsp.Sign(context.WithoutCancel(ctx), entry)
		if err != nil {
			return nil, err
		}
		p.metrics.OCSPSignatures.Add(1)
		cr := &cachedResponse{der: der, status: entry.Status, revokedAt: entry.RevokedAt, thisUpd: entry.ThisUpdate,
			nextUpd: entry.NextUpdate, refreshAt: entry.ThisUpdate.Add(entry.NextUpdate.Sub(entry.ThisUpdate) / 2)}
		// Only certificates this CA issued get here, so the cache holds at
		// most two responses (SHA-1 and SHA-256 CertIDs) per certificate.
		st.responses.Store(key, cr)
		return cr, nil
	})
	if err != nil {
		return nil, nil, false, err
	}
	cr := v.(*cachedResponse)
	return cr.der, cr, false, nil
}

// parseRequest reads a DER OCSP request as Anvil answers it: one CertID
// (RFC 5019), by SHA-1 or SHA-256, nothing after the request, and a nonce, if
// any, of 1 to 128 bytes. Any other request is errMalformed.
func parseRequest(raw []byte) (*ocsp.Request, error) {
	req, err := ocsp.ParseRequest(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	var full ocspRequest
	if rest, err := asn1.Unmarshal(raw, &full); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: trailing or undecodable data", errMalformed)
	}
	if len(full.TBSRequest.RequestList) != 1 {
		return nil, fmt.Errorf("%w: %d certificates in one request; RFC 5019 allows one", errMalformed, len(full.TBSRequest.RequestList))
	}
	// A nonce is checked for form and then ignored: echoing it would need a
	// signature per request, which anyone could ask for at will. RFC 8954 2.1
	// lets a responder leave it out; clients then check thisUpdate instead.
	for _, e := range full.TBSRequest.Extensions {
		if e.ID.Equal(oidOCSPNonce) {
			var nonce []byte
			if rest, err := asn1.Unmarshal(e.Value, &nonce); err != nil || len(rest) > 0 || len(nonce) == 0 || len(nonce) > 128 {
				return nil, fmt.Errorf("%w: bad nonce", errMalformed)
			}
		}
	}
	if req.HashAlgorithm != crypto.SHA1 && req.HashAlgorithm != crypto.SHA256 {
		return nil, fmt.Errorf("%w: CertID hash %v", errMalformed, req.HashAlgorithm)
	}
	return req, nil
}

// evictOCSP drops cached responses past their nextUpdate: those of
// certificates nobody asked about for a whole validity period. What is asked
// about is refreshed at half-life and never reaches this.
func (p *Publisher) evictOCSP() {
	now := p.cfg.Now()
	for _, st := range p.issuers {
		st.responses.Range(func(k, v any) bool {
			if !now.Before(v.(*cachedResponse).nextUpd) {
				st.responses.Delete(k)
			}
			return true
		})
	}
}

// issuerFor finds the issuer a request's CertID names.
func (p *Publisher) issuerFor(req *ocsp.Request) *issuerState {
	for _, st := range p.issuers {
		if bytes.Equal(st.nameHash[req.HashAlgorithm], req.IssuerNameHash) && bytes.Equal(st.keyHash[req.HashAlgorithm], req.IssuerKeyHash) {
			return st
		}
	}
	return nil
}

// status reads a certificate's status from storage: every request looks, so a
// revocation shows up in OCSP at once, on every node. An abandoned serial (its
// process ended between intent and outcome) has no certificate on record but
// may have been signed: it is revoked (cessationOfOperation), never unknown.
func (p *Publisher) status(ctx context.Context, st *issuerState, serial *big.Int) (issuance.OCSPEntry, error) {
	now := p.cfg.Now().UTC().Truncate(time.Second)
	e := issuance.OCSPEntry{Serial: serial, ThisUpdate: now, NextUpdate: now.Add(p.cfg.OCSPValidity)}
	c, err := p.store.GetCertificate(ctx, fmt.Sprintf("%x", serial))
	switch {
	case isNotFound(err), err == nil && ((c.DER == nil && c.Outcome != storage.OutcomeAbandoned) || c.Issuer != st.iss.Name()):
		e.Status = issuance.OCSPUnknown
	case err != nil:
		return e, err
	case !c.RevokedAt.IsZero():
		e.Status, e.RevokedAt, e.Reason = issuance.OCSPRevoked, c.RevokedAt, c.Reason
	default:
		e.Status = issuance.OCSPGood
	}
	return e, nil
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
func isConflict(err error) bool { return errors.Is(err, storage.ErrConflict) }
