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
