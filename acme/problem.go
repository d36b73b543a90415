package acme

import (
	"fmt"
	"net/http"
	"time"
)

// ProblemNS is the namespace of ACME error types (RFC 8555 6.7).
const ProblemNS = "urn:ietf:params:acme:error:"

// Problem is the one error type the protocol core returns to the API: an RFC
// 8555 error type with a detail that is safe to show the client, the HTTP status
// it travels with, and, for the log only, the internal cause.
type Problem struct {
	Type        string       `json:"type"`
	Detail      string       `json:"detail,omitempty"`
	Status      int          `json:"status,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
	Algorithms  []string     `json:"algorithms,omitempty"` // badSignatureAlgorithm
	Instance    string       `json:"instance,omitempty"`

	// RetryAfter, when set, is sent as a Retry-After header (rateLimited).
	RetryAfter time.Duration `json:"-"`
	// Location, when set, is sent as a Location header (a key rollover to a key
	// that is already an account's).
	Location string `json:"-"`
	// Cause is the internal error, for logs; never shown to clients.
	Cause error `json:"-"`
}

// Subproblem is a problem about one identifier (RFC 8555 6.7.1).
type Subproblem struct {
	Type       string     `json:"type"`
	Detail     string     `json:"detail,omitempty"`
	Identifier Identifier `json:"identifier"`
}

func (p *Problem) Error() string {
	s := p.Type + ": " + p.Detail
	if p.Cause != nil {
		s += " (" + p.Cause.Error() + ")"
	}
	return s
}

// Unwrap exposes the internal cause.
func (p *Problem) Unwrap() error { return p.Cause }

func problem(typ string, status int, format string, args ...any) *Problem {
	return &Problem{Type: ProblemNS + typ, Status: status, Detail: fmt.Sprintf(format, args...)}
}

// Constructors for the RFC 8555 error types Anvil uses.
func Malformed(format string, a ...any) *Problem {
	return problem("malformed", http.StatusBadRequest, format, a...)
}
func NotFound(format string, a ...any) *Problem {
	return problem("malformed", http.StatusNotFound, format, a...)
}
func MethodNotAllowed(format string, a ...any) *Problem {
	return problem("malformed", http.StatusMethodNotAllowed, format, a...)
}

// BadNonce's detail always begins with badNoncePrefix, Boulder's words: some
// clients (acme.sh 3.x) look for them, not for the problem type, before they
// retry with the fresh nonce that comes with the error (RFC 8555 6.5).
func BadNonce(format string, a ...any) *Problem {
	return problem("badNonce", http.StatusBadRequest, badNoncePrefix+format, a...)
}

const badNoncePrefix = "JWS has an invalid anti-replay nonce: "

func Unauthorized(format string, a ...any) *Problem {
	return problem("unauthorized", http.StatusForbidden, format, a...)
}
func AccountDoesNotExist(format string, a ...any) *Problem {
	return problem("accountDoesNotExist", http.StatusBadRequest, format, a...)
}
func BadSignatureAlgorithm(algs []string, format string, a ...any) *Problem {
	p := problem("badSignatureAlgorithm", http.StatusBadRequest, format, a...)
	p.Algorithms = algs
	return p
}
func BadPublicKey(format string, a ...any) *Problem {
	return problem("badPublicKey", http.StatusBadRequest, format, a...)
}
func BadCSR(format string, a ...any) *Problem {
	return problem("badCSR", http.StatusBadRequest, format, a...)
}
func OrderNotReady(format string, a ...any) *Problem {
	return problem("orderNotReady", http.StatusForbidden, format, a...)
}
func RejectedIdentifier(format string, a ...any) *Problem {
	return problem("rejectedIdentifier", http.StatusBadRequest, format, a...)
}
func UnsupportedIdentifier(format string, a ...any) *Problem {
	return problem("unsupportedIdentifier", http.StatusBadRequest, format, a...)
}
func InvalidContact(format string, a ...any) *Problem {
	return problem("invalidContact", http.StatusBadRequest, format, a...)
}
func UnsupportedContact(format string, a ...any) *Problem {
	return problem("unsupportedContact", http.StatusBadRequest, format, a...)
}
func ExternalAccountRequired(format string, a ...any) *Problem {
	return problem("externalAccountRequired", http.StatusUnauthorized, format, a...)
}
func AlreadyRevoked(format string, a ...any) *Problem {
	return problem("alreadyRevoked", http.StatusBadRequest, format, a...)
}
func BadRevocationReason(format string, a ...any) *Problem {
	return problem("badRevocationReason", http.StatusBadRequest, format, a...)
}
func Conflict(location, format string, a ...any) *Problem {
	p := problem("malformed", http.StatusConflict, format, a...)
	p.Location = location
	return p
}
func RateLimited(retryAfter time.Duration, format string, a ...any) *Problem {
	p := problem("rateLimited", http.StatusTooManyRequests, format, a...)
	p.RetryAfter = retryAfter
	return p
}
func InvalidProfile(format string, a ...any) *Problem {
	return problem("invalidProfile", http.StatusBadRequest, format, a...)
}

// ServerInternal hides cause from the client and keeps it for the log.
func ServerInternal(cause error, format string, a ...any) *Problem {
	p := problem("serverInternal", http.StatusInternalServerError, format, a...)
	p.Cause = cause
	return p
}

// ServiceUnavailable is a transient failure (the HSM is down or busy); the client
// may retry after the given time.
func ServiceUnavailable(cause error, retryAfter time.Duration, format string, a ...any) *Problem {
	p := problem("serverInternal", http.StatusServiceUnavailable, format, a...)
	p.Cause = cause
	p.RetryAfter = retryAfter
	return p
}
