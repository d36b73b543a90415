// Package signer carries the issuance service across the network: the server
// that `anvil signer` runs beside the HSM, and the client that ACME front ends
// use in place of in-process issuance.
//
// The protocol is JSON over HTTPS with mutual TLS. JSON over HTTP, not gRPC,
// because the two calls (issue, and info for profiles and chains) need no
// streaming or code generation, every operator can read them with curl, and it
// adds no dependency. Only clients whose certificate chains to the configured CA
// and whose identity is on the allow-list are served.
//
// The signer does not trust its caller: every request goes through the
// signer's own issuance.Service, which checks the CSR, the names against the
// signer's own policy and profiles, lints, records the serial and intent in the
// signer's ledger, signs, verifies and records the certificate. A request is
// idempotent by its requester (the order ID): a retry after a timeout gets the
// certificate already recorded for it instead of a second signature, provided
// it asks for the same key and names; a lease in the database keeps two
// signers from working on one requester at once. The client checks what it
// gets back: the signature against the issuer, the key and the names.
package signer

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/anvil-pki/anvil/issuance"
)

// IssueRequest is the body of POST /v1/issue.
type IssueRequest struct {
	CSR         []byte   `json:"csr"` // DER, base64 in JSON
	DNSNames    []string `json:"dns_names"`
	IPAddresses []string `json:"ip_addresses"`
	Profile     string   `json:"profile"`
	// Requester identifies the request for idempotency and the ledger: the
	// ACME order ID. Required.
	Requester string `json:"requester"`
}

// IssueResponse is the answer to a successful IssueRequest.
type IssueResponse struct {
	DER     []byte   `json:"der"`
	Chain   [][]byte `json:"chain"`
	Issuer  string   `json:"issuer"`
	Profile string   `json:"profile"`
	// Replayed says the certificate was already recorded for this requester
	// and nothing new was signed.
	Replayed bool `json:"replayed"`
}

// Info is the answer to GET /v1/info: what front ends need to serve ACME.
type Info struct {
	Profiles []ProfileInfo         `json:"profiles"` // default first
	Chains   map[string][][][]byte `json:"chains"`   // issuer -> chains, default first
}

// ProfileInfo names a profile.
type ProfileInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Problem is an error answer: kind says which issuance error it was, so that
// the client can give callers the same errors.Is behaviour as in-process
// issuance.
type Problem struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// kindOf classifies an issuance error for the wire: its kind is the name of
// its class in issuance's one table of errors, the status follows from who is
// to blame.
func kindOf(err error) (string, int) {
	c := issuance.Classify(err)
	return c.Name, faultStatus[c.Fault]
}

// faultStatus is the HTTP status the signer answers an issuance error with.
var faultStatus = map[issuance.Fault]int{
	issuance.FaultInternal:    http.StatusInternalServerError,
	issuance.FaultRequest:     http.StatusBadRequest,
	issuance.FaultPolicy:      http.StatusForbidden,
	issuance.FaultLint:        http.StatusUnprocessableEntity,
	issuance.FaultConflict:    http.StatusConflict,
	issuance.FaultUnavailable: http.StatusServiceUnavailable,
}

// errorOf rebuilds an error of the named kind on the client side, and says
// whether the request may be sent again as it is.
func errorOf(kind string) (err error, transient bool) {
	c, ok := issuance.ClassNamed(kind)
	return c.Err, ok && c.Transient
}

// matches checks that cert is for the key and the names of a request: what a
// replayed or received certificate must be before it stands for the request.
func matches(cert *x509.Certificate, spki []byte, dnsNames []string, ips []net.IP) error {
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
		return errors.New("the certificate is for another public key")
	}
	got, want := issuance.NamesOf(cert.DNSNames, cert.IPAddresses), issuance.NamesOf(dnsNames, ips)
	if !got.Equal(want) {
		return fmt.Errorf("the certificate names %s, the request %s", got, want)
	}
	return nil
}

func sha256Sum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
