package acme

import (
	"fmt"
	"time"
)

// ProblemNS is the namespace of ACME error types (RFC 8555 6.7).
const ProblemNS = "urn:ietf:params:acme:error:"

// Problem is the one error type the protocol core returns to the API: an RFC
// 8555 error type, a detail that is safe to show the client, what the client
// needs to act on it and, for the log only, the internal cause. It says nothing
// of HTTP: api maps a problem to its status in one place (api/problems.go). The
// JSON form is how a challenge's or an order's error is stored.
type Problem struct {
	Type        string       `json:"type"`
	Detail      string       `json:"detail,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
	Algorithms  []string     `json:"algorithms,omitempty"` // badSignatureAlgorithm (RFC 8555 6.2)

	// Condition says, for the few problems whose RFC 8555 type is too broad
	// (malformed, serverInternal), what happened: the resource is missing, it
	// exists already, or the CA is briefly unavailable.
	Condition Condition `json:"-"`
	// RetryAfter, when set, is how long the client should wait before it tries
	// again (rateLimited, Unavailable).
	RetryAfter time.Duration `json:"-"`
	// Location, when set, is the URL of the resource that already exists
	// (Duplicate: a key rollover to a key that is already an account's).
	Location string `json:"-"`
	// Cause is the internal error, for logs; never shown to clients.
	Cause error `json:"-"`
}

// Condition refines a problem type in the protocol's own terms.
type Condition uint8

const (
	// Refused, the zero value: the request was refused for what the type says.
	Refused Condition = iota
	// Missing: the resource the request names does not exist.
	Missing
	// Duplicate: the request would make a resource that exists already; the
	// problem's Location names it.
	Duplicate
	// Unavailable: a transient failure on the CA's side (the HSM or signer is
	// down or busy); the same request may succeed after RetryAfter.
	Unavailable
)

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

func problem(typ string, format string, args ...any) *Problem {
	return &Problem{Type: ProblemNS + typ, Detail: fmt.Sprintf(format, args...)}
}

// Constructors for the RFC 8555 error types Anvil uses.
func Malformed(format string, a ...any) *Problem {
	return problem("malformed", format, a...)
}

// NotFound is a request for a resource that does not exist: a malformed
// request, Missing.
func NotFound(format string, a ...any) *Problem {
	p := problem("malformed", format, a...)
	p.Condition = Missing
	return p
}

// BadNonce's detail always begins with badNoncePrefix, Boulder's words: some
// clients (acme.sh 3.x) look for them, not for the problem type, before they
// retry with the fresh nonce that comes with the error (RFC 8555 6.5).
func BadNonce(format string, a ...any) *Problem {
	return problem("badNonce", badNoncePrefix+format, a...)
}

const badNoncePrefix = "JWS has an invalid anti-replay nonce: "

func Unauthorized(format string, a ...any) *Problem {
	return problem("unauthorized", format, a...)
}
func AccountDoesNotExist(format string, a ...any) *Problem {
	return problem("accountDoesNotExist", format, a...)
}
func BadSignatureAlgorithm(algs []string, format string, a ...any) *Problem {
	p := problem("badSignatureAlgorithm", format, a...)
	p.Algorithms = algs
	return p
}
func BadPublicKey(format string, a ...any) *Problem {
	return problem("badPublicKey", format, a...)
}
func BadCSR(format string, a ...any) *Problem {
	return problem("badCSR", format, a...)
}
func OrderNotReady(format string, a ...any) *Problem {
	return problem("orderNotReady", format, a...)
}
func RejectedIdentifier(format string, a ...any) *Problem {
	return problem("rejectedIdentifier", format, a...)
}
func UnsupportedIdentifier(format string, a ...any) *Problem {
	return problem("unsupportedIdentifier", format, a...)
}
func InvalidContact(format string, a ...any) *Problem {
	return problem("invalidContact", format, a...)
}
func UnsupportedContact(format string, a ...any) *Problem {
	return problem("unsupportedContact", format, a...)
}
func ExternalAccountRequired(format string, a ...any) *Problem {
	return problem("externalAccountRequired", format, a...)
}
func AlreadyRevoked(format string, a ...any) *Problem {
	return problem("alreadyRevoked", format, a...)
}
func BadRevocationReason(format string, a ...any) *Problem {
	return problem("badRevocationReason", format, a...)
}

// Conflict is a request that would make what exists already, at location.
func Conflict(location, format string, a ...any) *Problem {
	p := problem("malformed", format, a...)
	p.Condition = Duplicate
	p.Location = location
	return p
}
func RateLimited(retryAfter time.Duration, format string, a ...any) *Problem {
	p := problem("rateLimited", format, a...)
	p.RetryAfter = retryAfter
	return p
}
func InvalidProfile(format string, a ...any) *Problem {
	return problem("invalidProfile", format, a...)
}

// ServerInternal hides cause from the client and keeps it for the log.
func ServerInternal(cause error, format string, a ...any) *Problem {
	p := problem("serverInternal", format, a...)
	p.Cause = cause
	return p
}

// ServiceUnavailable is a transient failure (the HSM is down or busy); the client
// may retry after the given time.
func ServiceUnavailable(cause error, retryAfter time.Duration, format string, a ...any) *Problem {
	p := problem("serverInternal", format, a...)
	p.Condition = Unavailable
	p.Cause = cause
	p.RetryAfter = retryAfter
	return p
}
