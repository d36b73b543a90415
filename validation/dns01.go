package validation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/miekg/dns"
)

// validateDNS01 looks up TXT at _acme-challenge.<name> (RFC 8555 §8.4),
// following CNAMEs, and succeeds if any record, its strings joined, is
// base64url(SHA-256(key authorization)).
func (v *Validator) validateDNS01(ctx context.Context, t target, keyAuth string) *Problem {
	name := "_acme-challenge." + t.name
	if !isDNSName(name) {
		return newProblem(ProblemMalformed, nil, "%s is too long to have an _acme-challenge record", t.name)
	}
	sum := sha256.Sum256([]byte(keyAuth))
	want := base64.RawURLEncoding.EncodeToString(sum[:])

	ans, err := v.resolver.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return dnsProblem(err, "")
	}
	if len(ans.rrs) == 0 {
		if ans.nxdomain {
			return newProblem(ProblemUnauthorized, nil, "No TXT record found at %s (NXDOMAIN)", name)
		}
		return newProblem(ProblemUnauthorized, nil, "No TXT record found at %s", name)
	}
	var found []string
	for _, rr := range ans.rrs {
		txt, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		value := strings.Join(txt.Txt, "")
		if subtle.ConstantTimeCompare([]byte(value), []byte(want)) == 1 {
			return nil
		}
		found = append(found, value)
	}
	return newProblem(ProblemIncorrectResponse, nil, "Incorrect TXT record %s found at %s", summarize(found, 3, 100), name)
}

// dnsProblem turns a lookup error into a dns problem, with prefix (e.g.
// "While processing CAA for example.com: ") before the detail.
func dnsProblem(err error, prefix string) *Problem {
	var de *dnsError
	if errors.As(err, &de) {
		return newProblem(ProblemDNS, err, "%s%s", prefix, de.detail())
	}
	return newProblem(ProblemDNS, err, "%sDNS problem: lookup failed", prefix)
}
