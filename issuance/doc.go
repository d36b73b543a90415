// Package issuance owns turning a validated request into a certificate signed in
// the HSM, and nothing else: it checks the CSR on its own (it does not trust its
// caller), picks the profile and the issuer, reserves a random serial, builds the
// certificate, lints it by signing it first with a throwaway key, records the
// linted certificate as the intent to sign, signs exactly the linted bytes with
// the issuer's key, verifies that signature against the issuer certificate, and
// records the certificate before it returns it.
//
// The only path to an issuer's private key is a Prepared issuance, which exists
// only after its serial and intent are on record and can be signed once. Nothing
// from a CSR reaches a certificate but its public key and its names.
//
// issuance must never speak HTTP or ACME; it knows nothing of accounts or orders
// beyond the opaque requester string it writes to its records.
package issuance
