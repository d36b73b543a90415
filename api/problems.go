package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/anvil-pki/anvil/acme"
)

// This file is the one place where a problem becomes an HTTP status, for the
// ACME v2 front end and (through ResolveProblem and ProblemStatus) the v1 one
// in api/legacy. acme's problems carry only what RFC 8555 says; as in
// Boulder's web/probs.go, the status is chosen here.

// statusByType is the HTTP status of each RFC 8555 6.7 error type (without
// its namespace), as RFC 8555 and Boulder answer with it. A type not listed is
// a 400: the request was refused.
var statusByType = map[string]int{
	"accountDoesNotExist":     http.StatusBadRequest,
	"alreadyReplaced":         http.StatusConflict, // RFC 9773 5
	"alreadyRevoked":          http.StatusBadRequest,
	"badCSR":                  http.StatusBadRequest,
	"badNonce":                http.StatusBadRequest,
	"badPublicKey":            http.StatusBadRequest,
	"badRevocationReason":     http.StatusBadRequest,
	"badSignatureAlgorithm":   http.StatusBadRequest,
	"caa":                     http.StatusForbidden,
	"connection":              http.StatusBadRequest,
	"dns":                     http.StatusBadRequest,
	"externalAccountRequired": http.StatusUnauthorized,
	"incorrectResponse":       http.StatusBadRequest,
	"invalidContact":          http.StatusBadRequest,
	"invalidProfile":          http.StatusBadRequest,
	"malformed":               http.StatusBadRequest,
	"orderNotReady":           http.StatusForbidden,
	"rateLimited":             http.StatusTooManyRequests,
	"rejectedIdentifier":      http.StatusBadRequest,
	"serverInternal":          http.StatusInternalServerError,
	"tls":                     http.StatusBadRequest,
	"unauthorized":            http.StatusForbidden,
	"unsupportedContact":      http.StatusBadRequest,
	"unsupportedIdentifier":   http.StatusBadRequest,
	"userActionRequired":      http.StatusForbidden,
}

// ProblemStatus is the HTTP status p travels with: by its condition where its
// type is too broad to say (a missing resource, a duplicate, a transient
// failure), else by its type.
func ProblemStatus(p *acme.Problem) int {
	switch p.Condition {
	case acme.Missing:
		return http.StatusNotFound
	case acme.Duplicate:
		return http.StatusConflict
	case acme.Unavailable:
		return http.StatusServiceUnavailable
	}
	if s, ok := statusByType[strings.TrimPrefix(p.Type, acme.ProblemNS)]; ok {
		return s
	}
	return http.StatusBadRequest
}

// HTTPProblem is a problem only the HTTP layer can have: a method the route
// does not take, a wrong Content-Type, a body too large. Its status is HTTP's
// own, not its type's (malformed).
type HTTPProblem struct {
	Status  int
	Problem *acme.Problem
}

// WithStatus makes p an HTTPProblem answered with status.
func WithStatus(status int, p *acme.Problem) *HTTPProblem {
	return &HTTPProblem{Status: status, Problem: p}
}

func (e *HTTPProblem) Error() string { return e.Problem.Error() }

// Unwrap exposes the problem, so that errors.As finds it.
func (e *HTTPProblem) Unwrap() error { return e.Problem }

// ResolveProblem turns any error a handler returns into the problem to send
// and its status. An error that is not a problem is an internal error, its
// text kept for the log only.
func ResolveProblem(err error) (*acme.Problem, int) {
	var hp *HTTPProblem
	if errors.As(err, &hp) {
		return hp.Problem, hp.Status
	}
	var p *acme.Problem
	if !errors.As(err, &p) {
		p = acme.ServerInternal(err, "internal error")
	}
	return p, ProblemStatus(p)
}

// problemDocument is a problem as it goes on the wire (RFC 7807, RFC 8555
// 6.7): the status is repeated in the body.
type problemDocument struct {
	Type        string            `json:"type"`
	Detail      string            `json:"detail,omitempty"`
	Status      int               `json:"status,omitempty"`
	Subproblems []acme.Subproblem `json:"subproblems,omitempty"`
	Algorithms  []string          `json:"algorithms,omitempty"`
}

func newProblemDocument(p *acme.Problem, status int) problemDocument {
	return problemDocument{Type: p.Type, Detail: p.Detail, Status: status, Subproblems: p.Subproblems, Algorithms: p.Algorithms}
}

// storedProblem renders a problem stored on a challenge or an order (acme's
// JSON form) as a problem document, with the status of its type. Rows stored
// before statuses left acme carry a status of their own; the mapping here
// replaces it.
func storedProblem(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var p acme.Problem
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil
	}
	b, err := json.Marshal(newProblemDocument(&p, ProblemStatus(&p)))
	if err != nil {
		return nil
	}
	return b
}
