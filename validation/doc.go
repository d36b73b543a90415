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
// Everything it receives is hostile: bodies, redirect chains and CNAME chains
// are bounded, every attempt has a deadline, and malformed answers become
// problems, not panics. A failure is a *Problem whose Type is an RFC 8555 error
// type and whose Detail is safe to show the subscriber; the internal cause, for
// the log only, is reachable with errors.Unwrap or by logging the Problem with
// log/slog.
//
// It imports nothing of Anvil's but config.
package validation
