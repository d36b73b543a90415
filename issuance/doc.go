// Package issuance owns turning a validated request into a certificate signed in
// the HSM, and nothing else: it checks the CSR on its own (it does not trust its
// caller), picks the profile and the issuer (refusing at once if the issuer's
// token is known to be down), draws a random serial, builds the certificate,
// lints it by signing it first with a throwaway key, reserves the serial and
// records the linted certificate as the intent to sign in one write, signs
// exactly the linted bytes with the issuer's key, verifies that signature
// against the issuer certificate, and records the certificate before it
// returns it. Every intent ends in one outcome in the ledger: issued, or not
// signed (the HSM call failed, or its signature did not verify).
//
// The only path to an issuer's private key is a Prepared issuance, which exists
// only after its serial and intent are on record and can be signed once. Nothing
// from a CSR reaches a certificate but its public key and its names.
//
// issuance must never speak HTTP or ACME; it knows nothing of accounts or orders
// beyond the opaque requester string it writes to its records.
package issuance
