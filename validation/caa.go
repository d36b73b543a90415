package validation

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// CheckCAA decides whether CAA (RFC 8659, with RFC 8657's accounturi and
// validationmethods) lets this CA issue for name: a DNS name, "*."-prefixed or
// with wildcard set for a wildcard certificate; accountURI is the ACME
// account's URL and method the challenge type that validated the name.
//
// The relevant record set is the first non-empty CAA set found climbing from
// name towards the root (not included), each lookup following CNAMEs. No set
// anywhere allows issuance. A lookup that fails (SERVFAIL, timeout) refuses:
// CAA fails closed. It returns nil when issuance is allowed, else a *Problem
// of type caa (records forbid) or dns (records could not be read).
//
// With Config.DisableCAA it allows everything. IP addresses have no CAA and
// are allowed.
func (v *Validator) CheckCAA(ctx context.Context, name string, wildcard bool, accountURI, method string) error {
	if v.cfg.DisableCAA {
		return nil
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name, wildcard = rest, true
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return nil
	}
	if !isDNSName(name) {
		return newProblem(ProblemMalformed, nil, "%s is not a valid DNS name", quote(name, 64))
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout.Duration)
	defer cancel()

	labels := strings.Split(name, ".")
	// Every level is looked up at once, and the answers are read in the order
	// of the climb: the outcome is the sequential climb's (the first failure
	// or non-empty set from the name up decides), in the time of one lookup
	// rather than one per label. Most names have no CAA anywhere, so the climb
	// goes to the top anyway; each lookup waited on alone cost the server a
	// wake-up from idle, about 4% of its CPU per certificate at concurrency 1
	// (make bench-acme).
	type answer struct {
		ans *dnsAnswer
		err error
	}
	answers := make([]chan answer, len(labels))
	sem := make(chan struct{}, maxParallelCAA)
	for i := range labels {
		answers[i] = make(chan answer, 1)
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				answers[i] <- answer{err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			ans, err := v.resolver.lookup(ctx, strings.Join(labels[i:], "."), dns.TypeCAA)
			answers[i] <- answer{ans, err}
		}()
	}
	// Returning cancels ctx: the lookups still under way give up.
	for i := range labels {
		a := <-answers[i]
		if a.err != nil {
			return dnsProblem(a.err, "While processing CAA for "+name+": ")
		}
		if len(a.ans.rrs) > 0 {
			return nilIfNoProblem(v.evaluateCAA(name, strings.Join(labels[i:], "."), a.ans.rrs, wildcard, accountURI, method))
		}
	}
	return nil
}

// maxParallelCAA bounds the CAA lookups of one check under way at once: a name
// may have up to 127 labels.
const maxParallelCAA = 8

// evaluateCAA applies the relevant record set found at `at` (RFC 8659 §4).
func (v *Validator) evaluateCAA(name, at string, rrs []dns.RR, wildcard bool, accountURI, method string) *Problem {
	var issue, issuewild []string
	for _, rr := range rrs {
		caa, ok := rr.(*dns.CAA)
		if !ok {
			continue
		}
		// Property tags are case-insensitive (RFC 8659 §4.1).
		switch strings.ToLower(caa.Tag) {
		case "issue":
			issue = append(issue, caa.Value)
		case "issuewild":
			issuewild = append(issuewild, caa.Value)
		case "iodef", "issuemail", "issuevmc", "contactemail", "contactphone":
			// Known properties that do not govern TLS server certificates.
		default:
			// An unknown property marked critical may restrict issuance in a
			// way we do not understand: refuse (RFC 8659 §4.1).
			if caa.Flag&0x80 != 0 {
				return newProblem(ProblemCAA, nil, "CAA record for %s prevents issuance: it has the unknown critical property %s", at, quote(caa.Tag, 32))
			}
		}
	}
	set, prop := issue, "issue"
	if wildcard && len(issuewild) > 0 {
		set, prop = issuewild, "issuewild"
	}
	if len(set) == 0 {
		return nil // the set restricts nothing this CA issues
	}
	// Report the most specific reason: a record naming us but with
	// parameters that exclude this request says more than "other CAs only".
	reason := fmt.Sprintf("its %q records do not name this CA", prop)
	for _, value := range set {
		ok, why := v.caaPermits(value, accountURI, method)
		if ok {
			return nil
		}
		if why != "" {
			reason = why
		}
	}
	if at != name {
		return newProblem(ProblemCAA, nil, "CAA record for %s prevents issuance for %s: %s", at, name, reason)
	}
	return newProblem(ProblemCAA, nil, "CAA record for %s prevents issuance: %s", at, reason)
}

// caaPermits reports whether one issue or issuewild value authorises this CA
// for this account and method. why is set when the value names this CA but
// does not authorise the request.
func (v *Validator) caaPermits(value, accountURI, method string) (ok bool, why string) {
	issuer, params, err := parseIssueValue(value)
	if err != nil || issuer == "" {
		// A malformed value, or ";" (no CA), authorises nobody.
		return false, ""
	}
	ours := false
	for _, id := range v.cfg.CAAIdentities {
		if strings.EqualFold(issuer, id) {
			ours = true
			break
		}
	}
	if !ours {
		return false, ""
	}
	var accountURIs, methods []string
	for _, p := range params {
		// Parameter tags are matched case-insensitively: reading
		// "AccountURI" as unknown would ignore a restriction the domain
		// owner meant.
		switch strings.ToLower(p.tag) {
		case "accounturi":
			accountURIs = append(accountURIs, p.value)
		case "validationmethods":
			methods = append(methods, p.value)
		}
	}
	if len(accountURIs) > 1 || len(methods) > 1 {
		return false, "a record naming this CA repeats a parameter, which makes it invalid"
	}
	if len(accountURIs) == 1 && accountURIs[0] != accountURI {
		return false, "the accounturi of the record naming this CA is not this ACME account"
	}
	if len(methods) == 1 {
		allowed := false
		for m := range strings.SplitSeq(methods[0], ",") {
			if !isCAALabel(m) {
				return false, "the validationmethods parameter is malformed"
			}
			if m == method {
				allowed = true
			}
		}
		if !allowed {
			return false, fmt.Sprintf("the validationmethods of the record naming this CA do not include %s", quote(method, 32))
		}
	}
	return true, ""
}

type caaParam struct{ tag, value string }

// parseIssueValue parses an issue or issuewild value (RFC 8659 §4.2):
//
//	issue-value = *WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]
//	parameters  = (parameter *WSP ";" *WSP parameters) / parameter
//	parameter   = tag *WSP "=" *WSP value
//	value       = *(%x21-3A / %x3C-7E)
//
// Empty parameters (a trailing ";") are tolerated: they change no meaning.
func parseIssueValue(s string) (issuer string, params []caaParam, err error) {
	const wsp = " \t"
	domainPart, paramPart, _ := strings.Cut(s, ";")
	issuer = strings.Trim(domainPart, wsp)
	if issuer != "" && !isIssuerDomainName(issuer) {
		return "", nil, fmt.Errorf("bad issuer domain name %q", issuer)
	}
	for p := range strings.SplitSeq(paramPart, ";") {
		p = strings.Trim(p, wsp)
		if p == "" {
			continue
		}
		tag, value, ok := strings.Cut(p, "=")
		if !ok {
			return "", nil, fmt.Errorf("parameter %q has no value", p)
		}
		tag, value = strings.TrimRight(tag, wsp), strings.TrimLeft(value, wsp)
		if !isCAALabel(tag) {
			return "", nil, fmt.Errorf("bad parameter tag %q", tag)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x21 || c > 0x7e {
				return "", nil, fmt.Errorf("bad character in parameter %q", tag)
			}
		}
		params = append(params, caaParam{tag, value})
	}
	return issuer, params, nil
}

// isIssuerDomainName: label *("." label), RFC 8659 §4.2.
func isIssuerDomainName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !isCAALabel(l) || len(l) > 63 {
			return false
		}
	}
	return true
}

// isCAALabel: (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT)), the label of RFC
// 8659 §4.2 and RFC 8657 §4.
func isCAALabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
