// Package validation owns proving that an ACME subscriber controls an
// identifier, and nothing else: the http-01 and dns-01 challenges of RFC 8555
// §8.3–8.4, tls-alpn-01 of RFC 8737, their IP-address forms of RFC 8738, and the
// CAA check of RFC 8659 with the accounturi and validationmethods parameters of
// RFC 8657. It answers one question per call (did this attempt succeed, may this
// CA issue for this name) and keeps no state between calls: challenge state,
// retries and records belong to the acme package.
//
// It must never talk to anything but the configured DNS resolvers and the
// addresses that the identifier, or a redirect target it chose to follow,
// resolves to through those resolvers. In particular it never uses the system
// resolver when resolvers are configured, never an HTTP proxy from the
// environment, and never connects to an unspecified, multicast or broadcast
// address, nor to a loopback, private, link-local or otherwise reserved one
// unless Config.AllowPrivateTargets says the network is a closed one.
//
// Within one attempt a name is resolved once, and every connection to it
// (the first request, any redirect back to it) goes to an address of that
// one filtered resolution, so a DNS answer that changes mid-attempt cannot
// rebind it. http-01 follows redirects only as the CA/Browser Forum Baseline
// Requirements 3.2.2.4.19 allow: 301, 302, 307 or 308, to http or https on
// the validation ports, to a DNS name (never an IP literal, userinfo or a
// percent-encoded host), at most 10 hops, loops ended.
//
// Everything it receives is hostile: bodies, redirect chains and CNAME chains
// are bounded, every attempt has a deadline, and malformed answers become
// problems, not panics. A failure is a *Problem whose Type is an RFC 8555 error
// type and whose Detail is safe to show the subscriber; the internal cause, for
// the log only, is reachable with errors.Unwrap or by logging the Problem with
// log/slog. A Detail names the rule that failed, shows at most a short
// escaped prefix of a remote body, and holds no control character.
//
// It imports nothing of Anvil's but config.
package validation
