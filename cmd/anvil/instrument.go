package main

// Decorators at the seams between the packages, feeding package metrics:
// they see every call without the packages knowing of Prometheus.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/metrics"
	"github.com/anvil-pki/anvil/revocation"
	"github.com/anvil-pki/anvil/storage"
)

// instrumentedValidator counts and times validations and CAA checks.
type instrumentedValidator struct {
	acme.Validator
	m *metrics.Metrics
}

func (v instrumentedValidator) Validate(ctx context.Context, ident acme.Identifier, typ, token, keyAuth string) error {
	start := time.Now()
	err := v.Validator.Validate(ctx, ident, typ, token, keyAuth)
	v.observe(typ, start, err)
	return err
}

// ValidateContacted keeps the wrapped validator's report of the addresses it
// contacted (acme.ContactReporter), which the audit log records.
func (v instrumentedValidator) ValidateContacted(ctx context.Context, ident acme.Identifier, typ, token, keyAuth string) ([]string, error) {
	cr, ok := v.Validator.(acme.ContactReporter)
	if !ok {
		return nil, v.Validate(ctx, ident, typ, token, keyAuth)
	}
	start := time.Now()
	contacted, err := cr.ValidateContacted(ctx, ident, typ, token, keyAuth)
	v.observe(typ, start, err)
	return contacted, err
}

func (v instrumentedValidator) observe(typ string, start time.Time, err error) {
	switch typ {
	case acme.HTTP01, acme.DNS01, acme.TLSALPN01:
	default:
		typ = "other"
	}
	v.m.ValidationDuration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	v.m.Validations.WithLabelValues(typ, validationOutcome(err, "valid")).Inc()
}

func (v instrumentedValidator) CheckCAA(ctx context.Context, name string, wildcard bool, accountURI, method string) error {
	err := v.Validator.CheckCAA(ctx, name, wildcard, accountURI, method)
	v.m.CAAChecks.WithLabelValues(validationOutcome(err, "allowed")).Inc()
	return err
}

// validationOutcome is ok for success, else the problem type the client sees.
func validationOutcome(err error, ok string) string {
	if err == nil {
		return ok
	}
	var ve *acme.ValidationError
	if errors.As(err, &ve) {
		return metrics.ProblemType(ve.Type)
	}
	return "serverInternal"
}

// instrumentedSigner times a front end's calls to its remote signer.
type instrumentedSigner struct {
	acme.Issuer
	m *metrics.Metrics
}

func (s instrumentedSigner) Issue(ctx context.Context, req issuance.Request) (*issuance.Issued, error) {
	start := time.Now()
	issued, err := s.Issuer.Issue(ctx, req)
	s.m.SignerDuration.WithLabelValues("issue").Observe(time.Since(start).Seconds())
	s.m.SignerRequests.WithLabelValues("issue", metrics.IssuanceOutcome(err)).Inc()
	return issued, err
}

// timedKey times each signature of an HSM key. It embeds the key, so the
// health checks issuance asks of it pass through.
type timedKey struct {
	*hsm.Key
	m          *metrics.Metrics
	token, key string
}

func timeKey(k *hsm.Key, m *metrics.Metrics) *timedKey {
	label := k.Ref().Label
	if label == "" {
		label = hex.EncodeToString(k.Ref().ID)
	}
	return &timedKey{Key: k, m: m, token: k.Token().Label(), key: label}
}

func (k *timedKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := k.Key.Sign(r, digest, opts)
	k.m.HSMSignDuration.WithLabelValues(k.token, k.key).Observe(time.Since(start).Seconds())
	return sig, err
}

func (k *timedKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := k.Key.SignContext(ctx, digest, opts)
	k.m.HSMSignDuration.WithLabelValues(k.token, k.key).Observe(time.Since(start).Seconds())
	return sig, err
}

// ocspOutcomes are the fixed bodies of OCSP error responses (RFC 6960 2.3),
// by the outcome label they count under.
var ocspOutcomes = []struct {
	body    []byte
	outcome string
}{
	{ocsp.MalformedRequestErrorResponse, "malformedRequest"},
	{ocsp.InternalErrorErrorResponse, "internalError"},
	{ocsp.TryLaterErrorResponse, "tryLater"},
	{ocsp.SigRequredErrorResponse, "sigRequired"},
	{ocsp.UnauthorizedErrorResponse, "unauthorized"},
}

// ocspCounting counts the OCSP responses the publisher's handler writes, by
// outcome, from the response itself: the publisher stays free of metrics.
type ocspCounting struct {
	http.ResponseWriter
	m     *metrics.Metrics
	wrote bool
}

func (w *ocspCounting) Write(b []byte) (int, error) {
	if !w.wrote {
		w.wrote = true
		if w.Header().Get("Content-Type") == "application/ocsp-response" {
			outcome := "successful"
			for _, o := range ocspOutcomes {
				if bytes.Equal(b, o.body) {
					outcome = o.outcome
				}
			}
			w.m.OCSPResponses.WithLabelValues(outcome).Inc()
		}
	}
	return w.ResponseWriter.Write(b)
}

// pkiHandler is the publisher's CRL, certificate and OCSP handler, with its
// OCSP responses counted.
func pkiHandler(p *revocation.Publisher, ocspPath string, m *metrics.Metrics) http.Handler {
	h := p.Handler(ocspPath)
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&ocspCounting{ResponseWriter: w, m: m}, r)
	})
}

// observePublisher reports the publisher's CRLs (each issuer's stored CRL, and
// the CRLs in pki.files) and its counters at every scrape.
func observePublisher(m *metrics.Metrics, store storage.Store, p *revocation.Publisher, issuers []*issuance.Issuer, files map[string]string) {
	var fileCRLs []metrics.CRLState
	for _, path := range sortedKeys(files) {
		crl, size, err := readCRLFile(files[path])
		if err != nil || crl == nil {
			continue // a certificate, or unreadable: revocation.New has refused the latter
		}
		fileCRLs = append(fileCRLs, metrics.CRLState{Issuer: crl.Issuer.CommonName, Source: "file",
			Number: crlNumber(crl), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, Size: size, Entries: len(crl.RevokedCertificateEntries)})
	}
	fileCRLs = dedupeCRLs(fileCRLs)
	// Parsing a CRL costs time in its size, and reading it a transfer of its
	// size: read and parse each shard's CRL once per number, and take the
	// times from the heads alone.
	type shardKey struct {
		issuer string
		shard  int
	}
	type parsed struct {
		number        int64
		size, entries int
	}
	cache := map[shardKey]parsed{}
	var mu sync.Mutex // scrapes may overlap
	m.SetCRLSource(func(ctx context.Context) []metrics.CRLState {
		mu.Lock()
		defer mu.Unlock()
		out := append([]metrics.CRLState(nil), fileCRLs...)
		for _, iss := range issuers {
			heads, err := store.CRLHeads(ctx, iss.Name())
			if err != nil {
				continue // a scrape reports what it can; the CRL age alert's absent() covers a gap
			}
			for _, h := range heads {
				k := shardKey{iss.Name(), h.Shard}
				pc, ok := cache[k]
				if !ok || pc.number != h.Number {
					pc = parsed{number: h.Number, size: -1, entries: -1}
					if c, err := store.GetCRLShard(ctx, iss.Name(), h.Shard); err == nil && c.Number == h.Number {
						pc.size = len(c.DER)
						if rl, err := x509.ParseRevocationList(c.DER); err == nil {
							pc.entries = len(rl.RevokedCertificateEntries)
						}
						cache[k] = pc
					}
				}
				out = append(out, metrics.CRLState{Issuer: iss.Name(), Source: "store", Shard: h.Shard, Number: h.Number,
					ThisUpdate: h.ThisUpdate, NextUpdate: h.NextUpdate, Size: pc.size, Entries: pc.entries})
			}
		}
		return out
	})
	m.SetPublisherSource(func() metrics.PublisherCounts {
		pm := p.Metrics()
		return metrics.PublisherCounts{OCSPCacheHits: pm.OCSPCacheHits.Load(), OCSPSignatures: pm.OCSPSignatures.Load(), CRLsPublished: pm.CRLsPublished.Load()}
	})
}

// caCertificates lists the CA certificates whose expiry is reported: each
// issuer by its name, then the certificates of its chains and of pki.files
// (roots and cross-signs) by their subject's common name, once each.
func caCertificates(issuers []*issuance.Issuer, files map[string]string) []metrics.CertificateState {
	var out []metrics.CertificateState
	seen := map[[32]byte]bool{}
	add := func(c *x509.Certificate, name, role string) {
		fp := sha256.Sum256(c.Raw)
		if seen[fp] {
			return
		}
		seen[fp] = true
		out = append(out, metrics.CertificateState{Name: name, Role: role, NotAfter: c.NotAfter})
	}
	for _, iss := range issuers {
		add(iss.Certificate(), iss.Name(), "issuer")
	}
	other := func(c *x509.Certificate) {
		role := "intermediate"
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			role = "root"
		}
		add(c, c.Subject.CommonName, role)
	}
	for _, iss := range issuers {
		for _, chain := range iss.Chains() {
			for _, der := range chain {
				if c, err := x509.ParseCertificate(der); err == nil {
					other(c)
				}
			}
		}
	}
	for _, path := range sortedKeys(files) {
		if c, err := config.ReadCertificate(files[path]); err == nil {
			other(c)
		} else if b, err := os.ReadFile(files[path]); err == nil {
			if c, err := x509.ParseCertificate(b); err == nil { // DER
				other(c)
			}
		}
	}
	// Two certificates with one common name and role (a root and its
	// re-issue) would be one series: tell them apart by fingerprint.
	count := map[[2]string]int{}
	for _, c := range out {
		count[[2]string{c.Name, c.Role}]++
	}
	for i, c := range out {
		if count[[2]string{c.Name, c.Role}] > 1 {
			out[i].Name = fmt.Sprintf("%s (%s)", c.Name, c.NotAfter.UTC().Format("2006-01-02"))
		}
	}
	return out
}

// readCRLFile reads a CRL, PEM or DER; nil without error if the file holds
// something else.
func readCRLFile(name string) (*x509.RevocationList, int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, 0, err
	}
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != "X509 CRL" {
			return nil, 0, nil
		}
		b = block.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, 0, nil
	}
	return crl, len(b), nil
}

func crlNumber(c *x509.RevocationList) int64 {
	if c.Number == nil || !c.Number.IsInt64() {
		return 0
	}
	return c.Number.Int64()
}

func dedupeCRLs(in []metrics.CRLState) []metrics.CRLState {
	seen := map[string]bool{}
	var out []metrics.CRLState
	for _, c := range in {
		if !seen[c.Issuer] {
			seen[c.Issuer] = true
			out = append(out, c)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
