package validation

import (
	"fmt"
	"log/slog"
	"strings"
)

// RFC 8555 §6.7 error types, without the "urn:ietf:params:acme:error:" prefix,
// that a Problem may carry. The acme and api packages add the prefix.
const (
	ProblemConnection         = "connection"         // could not connect to the validation target
	ProblemUnauthorized       = "unauthorized"       // nothing answered the challenge (404, no TXT record, no acme-tls/1)
	ProblemDNS                = "dns"                // a DNS lookup failed or found no usable address
	ProblemIncorrectResponse  = "incorrectResponse"  // something answered, but not with this challenge's response
	ProblemTLS                = "tls"                // the TLS handshake with the target failed
	ProblemCAA                = "caa"                // CAA records forbid this CA from issuing
	ProblemMalformed          = "malformed"          // the request cannot be validated as asked (wrong challenge for the identifier)
	ProblemServerInternal     = "serverInternal"     // the caller passed something only a bug produces
	ProblemRejectedIdentifier = "rejectedIdentifier" // the identifier is an address this CA never connects to
)

// Problem is why one validation attempt or CAA check failed. Type is one of the
// Problem* constants. Detail is written for the subscriber and never contains
// more than helps them fix their side (a URL, an address, what was found);
// Err, when set, is the internal cause and goes to the log only.
type Problem struct {
	Type   string
	Detail string
	Err    error
}

// Error returns the type and the client-safe detail, so that a Problem that
// ends up printed where a client can see it still leaks nothing internal.
func (p *Problem) Error() string { return p.Type + ": " + p.Detail }

// Unwrap returns the internal cause, for errors.Is/As and the log.
func (p *Problem) Unwrap() error { return p.Err }

// LogValue makes slog record the internal cause beside the type and detail.
func (p *Problem) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("type", p.Type), slog.String("detail", p.Detail)}
	if p.Err != nil {
		attrs = append(attrs, slog.String("cause", p.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

func newProblem(typ string, cause error, format string, args ...any) *Problem {
	return &Problem{Type: typ, Detail: fmt.Sprintf(format, args...), Err: cause}
}

// quote renders a string received from the network for a Detail: quoted and
// escaped, and cut to max bytes so a hostile server cannot fill the problem
// document.
func quote(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// summarize quotes up to n values and says how many more there were.
func summarize(values []string, n, max int) string {
	var b strings.Builder
	for i, s := range values {
		if i == n {
			fmt.Fprintf(&b, " and %d more", len(values)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(s, max))
	}
	return b.String()
}
