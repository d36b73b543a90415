// Package acme is the protocol core of Anvil's ACME server (RFC 8555): accounts,
// orders, authorizations and challenges and the state machine that moves them,
// the identifier policy at order time, and finalization through the issuance
// service. It takes typed, already-authenticated requests from the api package
// and returns records or a *Problem; it never sees HTTP, JWS or URLs beyond the
// account URL that CAA's accounturi needs.
//
// Every state change that can race is a conditional update in storage: twenty
// concurrent finalizes of one order make one certificate, the rest get
// orderNotReady. Order status is derived from its authorizations when read and
// written back conditionally, so no write has to find the orders of an
// authorization.
package acme
