// Package hsm owns Anvil's connection to PKCS#11 tokens: opening a token by label
// or serial, logging in with a PIN from a file or the environment, generating key
// pairs with explicit templates, finding exactly one key pair by ID and label, and
// signing with it as a crypto.Signer that survives the token going away and
// coming back.
//
// It must never read, export or log a private key or a PIN, and it imports
// nothing else of Anvil's. Every error carries the module, token, key and
// operation, and wraps the PKCS#11 return code so that errors.As finds a
// pkcs11.Error.
//
// The engine is crypto11 over miekg/pkcs11. crypto11 keeps one initialised module
// per library path and returns broken sessions to its pool, so recovery here is
// per module: when a token shows it has gone (invalid handles, device removed,
// not logged in), every crypto11 Context on that module is closed, the module is
// finalised, and each token is opened, logged in, its keys found again, checked
// to be the same keys, test-signed and swapped in. Until then signing fails fast
// with ErrUnavailable. A sign the module never answers is abandoned after
// Config.SignTimeout; the goroutine inside the module cannot be reclaimed, which
// is the one cost a hung HSM imposes on the process.
//
// One failed call is not a dead token: a sign that fails with a device or
// session error is tried once more on another session of the pool before the
// token is declared down, and while signs wait for a down token, recovery
// tries at least every MaxBackoffWhileWaiting. A refused PIN (incorrect,
// locked, expired, wrong length) is never retried: the token stays "login
// refused" until Token.Relogin, the operator's SIGHUP, since retries lock a
// real HSM's PIN. Every signature is verified with the key's public key before
// SignContext returns it; one that does not verify is ErrSignatureCheckFailed,
// and the token reports itself degraded until it signs correctly again.
// Token.Health answers from this known state without calling the module, and
// Config.OnEvent hears of every such event (for the audit log).
package hsm
