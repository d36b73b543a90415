package validation

import (
	"context"
	"net/url"
)

// ChallengeSimpleHTTPS is the challenge of draft-barnes-acme-01, the seed of
// Anvil, offered only by the ACME v1 front end when configured.
const ChallengeSimpleHTTPS = "simpleHttps"

// validateSimpleHTTPS is simpleHttps as the seed's slides describe it: fetch
// https://<name>/.well-known/acme-challenge/<path> on the TLS port, without
// checking the certificate (the applicant may only have a self-signed one;
// what proves control is the body), and compare the content to the token.
// Everything else is http-01's: one resolution per attempt, every address
// filtered, redirects only as the Baseline Requirements allow, the attempt's
// timeout, the body limit.
//
// The path is the token itself: Anvil stores no per-challenge path, so the
// v1 front end accepts a "path" answer only when it names the token.
func (v *Validator) validateSimpleHTTPS(ctx context.Context, at *attempt, t target, token string) *Problem {
	h := hop{host: t.String(), ip: t.ip, port: v.cfg.TLSPort}
	h.url = &url.URL{Scheme: "https", Host: urlHost(h.host, h.port, 443), Path: wellKnownPath + token}
	return v.followChain(ctx, at, h, token)
}
