package issuance

import "errors"

// Categories of refusal. Callers map them to protocol errors with errors.Is;
// the wrapped message says exactly what was wrong.
var (
	// ErrBadCSR: the CSR is malformed, badly signed, or asks for what the CA
	// never puts in a certificate (email or URI names, a CN not among the names).
	ErrBadCSR = errors.New("bad CSR")
	// ErrBadPublicKey: the key type, size or value is not acceptable.
	ErrBadPublicKey = errors.New("unacceptable public key")
	// ErrBadSignatureAlgorithm: the CSR is signed with a refused algorithm.
	ErrBadSignatureAlgorithm = errors.New("unacceptable CSR signature algorithm")
	// ErrRejectedName: a name is malformed or outside policy.
	ErrRejectedName = errors.New("rejected name")
	// ErrNamesMismatch: the CSR does not name exactly what the request authorised.
	ErrNamesMismatch = errors.New("CSR names differ from the authorised names")
	// ErrUnknownProfile: the request names a profile this service does not have.
	ErrUnknownProfile = errors.New("unknown profile")
	// ErrLint: the certificate failed an error-level lint; nothing was signed.
	ErrLint = errors.New("certificate failed lint")
	// ErrLedger: the issuance could not be recorded.
	ErrLedger = errors.New("issuance ledger")
	// ErrSignature: the HSM returned a signature that does not verify, or signed
	// bytes other than the linted ones.
	ErrSignature = errors.New("HSM signature check failed")
	// ErrAlreadySigned: a Prepared issuance was signed before.
	ErrAlreadySigned = errors.New("prepared issuance already used")
	// ErrSignerUnavailable: the HSM (or a remote signer) is down or busy; nothing
	// was signed and the request may be retried.
	ErrSignerUnavailable = errors.New("signer unavailable")
	// ErrOutcomeUnknown: a remote signer was asked and no answer came back, or
	// another signer is working on the same request; a certificate may exist.
	// Ask again later with the same request: the signer then answers from its
	// ledger instead of signing twice.
	ErrOutcomeUnknown = errors.New("issuance outcome unknown")
	// ErrRequesterConflict: the requester (an order) already has a certificate,
	// for another key or other names. One order, one certificate.
	ErrRequesterConflict = errors.New("the requester already has a different certificate")
)

// Class is one category of issuance error and what each caller of issuance
// needs to turn it into its own protocol's error. Classes is the one table
// that acme's finalize (an RFC 8555 problem, and whether the order may be
// finalized again) and the signer's wire format (a kind, a status) both
// read, so that an error means the same in-process and across the network.
type Class struct {
	// Name is the category's stable name: the signer protocol's kind.
	Name string
	// Err is the sentinel errors.Is matches; nil only for ClassInternal.
	Err error
	// Problem is the RFC 8555 error type (without its namespace) an ACME
	// client is shown.
	Problem string
	// Detail is what an ACME client is told. For a serverInternal problem it
	// is all the client sees (the error goes to the log); for the others it
	// comes before the error's own text, which says what was wrong with the
	// request.
	Detail string
	// Final says that the same order cannot succeed by trying again: it
	// becomes invalid rather than ready.
	Final bool
	// Transient says that nothing was signed, or that the ledger will answer
	// the same request, so it may be sent again shortly as it is.
	Transient bool
	// Fault says who is to blame, for transports that answer with a status.
	Fault Fault
}

// Fault is who is to blame for an issuance error.
type Fault uint8

const (
	FaultInternal    Fault = iota // the service itself: a bug, or an HSM that misbehaved
	FaultRequest                  // the request (its CSR, key or profile) is unacceptable
	FaultPolicy                   // a name is outside the CA's policy
	FaultLint                     // the certificate the request would make fails a lint
	FaultConflict                 // the requester already has another certificate
	FaultUnavailable              // a dependency (HSM, signer, ledger) is down or busy
)

// Classes lists the categories of issuance error, each matched in this order.
var Classes = []Class{
	{Name: "badCSR", Err: ErrBadCSR, Problem: "badCSR", Fault: FaultRequest},
	{Name: "badPublicKey", Err: ErrBadPublicKey, Problem: "badPublicKey", Fault: FaultRequest},
	{Name: "badSignatureAlgorithm", Err: ErrBadSignatureAlgorithm, Problem: "badCSR", Fault: FaultRequest},
	{Name: "namesMismatch", Err: ErrNamesMismatch, Problem: "badCSR", Fault: FaultRequest},
	{Name: "rejectedName", Err: ErrRejectedName, Problem: "rejectedIdentifier", Final: true, Fault: FaultPolicy},
	{Name: "unknownProfile", Err: ErrUnknownProfile, Problem: "invalidProfile", Final: true, Fault: FaultRequest},
	{Name: "lint", Err: ErrLint, Problem: "serverInternal", Detail: "the certificate failed a pre-issuance lint; nothing was signed", Final: true, Fault: FaultLint},
	{Name: "ledger", Err: ErrLedger, Problem: "serverInternal", Detail: "issuance failed", Fault: FaultUnavailable},
	{Name: "signerUnavailable", Err: ErrSignerUnavailable, Problem: "serverInternal", Detail: "the signer is unavailable; try finalizing again shortly", Transient: true, Fault: FaultUnavailable},
	{Name: "inProgress", Err: ErrOutcomeUnknown, Problem: "serverInternal", Detail: "the signer is unavailable; try finalizing again shortly", Transient: true, Fault: FaultUnavailable},
	{Name: "conflict", Err: ErrRequesterConflict, Problem: "orderNotReady", Detail: "this order already has a certificate for another key or other names: ", Final: true, Fault: FaultConflict},
	{Name: "signature", Err: ErrSignature, Problem: "serverInternal", Detail: "issuance failed", Fault: FaultInternal},
}

// ClassInternal is the class of an error no other class matches.
var ClassInternal = Class{Name: "internal", Problem: "serverInternal", Detail: "issuance failed", Fault: FaultInternal}

// Classify returns the class of an issuance error.
func Classify(err error) Class {
	for _, c := range Classes {
		if errors.Is(err, c.Err) {
			return c
		}
	}
	return ClassInternal
}

// ClassNamed returns the class of a name, as the signer's wire carries it.
func ClassNamed(name string) (Class, bool) {
	for _, c := range Classes {
		if c.Name == name {
			return c, true
		}
	}
	return Class{}, false
}
