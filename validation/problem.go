package validation

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
	return &Problem{Type: typ, Detail: escapeControls(fmt.Sprintf(format, args...)), Err: cause}
}

// escapeControls escapes, Go-style, every control character (C0, DEL, C1),
// invisible format character (bidi overrides, zero-width joiners), line or
// paragraph separator and invalid UTF-8 byte in a detail. Values from the
// network are quoted where they are put in, but a detail also carries URLs
// and names the applicant chose; this last pass makes sure that nothing in
// a detail can break a log line or a terminal, or make text read backwards,
// whatever a future message forgets to quote.
func escapeControls(s string) string {
	clean := true
	for _, r := range s {
		if needsEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
				continue
			}
			fmt.Fprintf(&b, `\u%04x`, r)
		case r < 0x80 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) ||
		r == '\u2028' || r == '\u2029'
}

// quote renders a string received from the network for a Detail: quoted and
// escaped (strconv.QuoteToASCII, so no control or invisible character gets
// through), and cut to max bytes so a hostile server cannot fill the problem
// document.
func quote(s string, max int) string {
	if len(s) > max {
		return strconv.QuoteToASCII(s[:max]) + "…"
	}
	return strconv.QuoteToASCII(s)
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
