package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// ErrUnavailable says the HSM cannot sign right now: the token is gone, the module
// stopped answering, or recovery is under way. Callers may retry later.
var ErrUnavailable = errors.New("HSM unavailable")

// ErrSignatureCheckFailed says the token returned a signature that does not
// verify with the key's public key: nothing usable left the HSM. It is counted,
// logged and reported by Health as degraded until the token signs correctly.
var ErrSignatureCheckFailed = errors.New("HSM signature does not verify with the key's public key")

// ErrLoginRefused says the token refused the PIN (incorrect, locked, expired or
// of the wrong length). Anvil does not log in again until the operator asks
// (Token.Relogin, SIGHUP), because retrying would lock a real HSM's PIN.
var ErrLoginRefused = errors.New("login refused")

// ErrBusy says every session was in use for longer than Config.SessionWait.
var ErrBusy = errors.New("HSM busy: no free session")

// ErrNotFound says no key matched a lookup.
var ErrNotFound = errors.New("key not found")

// ErrAmbiguous says more than one object matched a lookup that must match one.
var ErrAmbiguous = errors.New("key lookup is ambiguous")

// ErrExists says a key with the requested label or ID is already on the token.
var ErrExists = errors.New("key already exists")

// Error is an HSM failure with its context. Kind, when set, is one of the
// sentinel errors of this package; Err is the cause, often a pkcs11.Error.
type Error struct {
	Op     string // what was being done: "open", "login", "sign", "find key", ...
	Module string
	Token  string
	Key    string // key label, or "" when the operation is not about a key
	Kind   error
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hsm: ")
	b.WriteString(e.Op)
	var where []string
	if e.Key != "" {
		where = append(where, fmt.Sprintf("key %q", e.Key))
	}
	if e.Token != "" {
		where = append(where, fmt.Sprintf("token %q", e.Token))
	}
	if e.Module != "" {
		where = append(where, "module "+e.Module)
	}
	if len(where) > 0 {
		b.WriteString(" (" + strings.Join(where, ", ") + ")")
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ReturnCode returns the PKCS#11 return code inside err, if there is one.
func ReturnCode(err error) (pkcs11.Error, bool) {
	var p pkcs11.Error
	if errors.As(err, &p) {
		return p, true
	}
	return 0, false
}

// tokenGone reports whether err means the token, its session or its objects are no
// longer what we opened, so that only closing everything and opening again helps.
func tokenGone(err error) bool {
	code, ok := ReturnCode(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_GENERAL_ERROR,
		pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// pinRefused reports whether err is the token refusing the PIN itself, which
// must never be retried without the operator.
func pinRefused(err error) bool {
	code, ok := ReturnCode(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED,
		pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_INVALID:
		return true
	}
	return false
}

// retryable reports whether a failed sign is worth one more try on another
// session before the token is declared down: a device or session error can be
// one bad call, not a dead token. A refused PIN never is, nor an error that
// says the request itself is wrong.
func retryable(err error) bool {
	code, ok := ReturnCode(err)
	if !ok || pinRefused(err) {
		return false
	}
	if tokenGone(err) {
		return true
	}
	switch code {
	case pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_OPERATION_ACTIVE, pkcs11.CKR_SESSION_COUNT:
		return true
	}
	return false
}

// sessionBroken reports whether err says the session itself is gone.
func sessionBroken(err error) bool {
	code, ok := ReturnCode(err)
	return ok && (code == pkcs11.CKR_SESSION_HANDLE_INVALID || code == pkcs11.CKR_SESSION_CLOSED)
}

// explainSessionCount adds what to do to a CKR_SESSION_COUNT answer.
func explainSessionCount(err error, maxSessions int) error {
	if code, ok := ReturnCode(err); ok && code == pkcs11.CKR_SESSION_COUNT {
		return fmt.Errorf("the token allows fewer sessions than hsm.max_sessions (%d): lower hsm.max_sessions: %w", maxSessions, err)
	}
	return err
}
