package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/storage"
)

// allowedAlgs is the JWS algorithm allow-list. Nothing symmetric and not
// "none": an account key is a public key.
var allowedAlgs = []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"}

// signedRequest is a POST whose JWS passed every check of RFC 8555 6.
type signedRequest struct {
	payload    []byte
	postAsGet  bool
	jwk        *jose.JSONWebKey // the key in the header (newAccount, revokeCert by key)
	account    *storage.Account // the account named by kid
	accountKey *jose.JSONWebKey
}

// keyMode says which of jwk and kid an endpoint takes.
type keyMode int

const (
	needKID keyMode = iota
	needJWK
	eitherKey
)

type protectedHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	JWK   json.RawMessage `json:"jwk"`
	KID   string          `json:"kid"`
	B64   *bool           `json:"b64"`
	Crit  []string        `json:"crit"`
}

type flattenedJWS struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// verifyPOST applies every check of RFC 8555 6.2-6.5 to a POST: content type,
// size, flattened serialization only, algorithm allow-list matching the key,
// exactly one of jwk and kid, url equal to the request URL, a valid signature,
// and a fresh nonce used once. The checks are split the way Boulder's
// wfe2/verify.go splits them (the request, the JWS, the URL, the key, the
// signature, the nonce), each tested on its own; their order here is the
// order a client sees the problems in, and the nonce is spent last, only on a
// request that passed everything else.
func (s *Server) verifyPOST(r *http.Request, mode keyMode) (*signedRequest, error) {
	body, err := s.validPOSTRequest(r)
	if err != nil {
		return nil, err
	}
	jws, h, err := parseJWS(body, mode)
	if err != nil {
		return nil, err
	}
	if err := s.validPOSTURL(r, h); err != nil {
		return nil, err
	}
	req, key, err := s.lookupKey(r.Context(), h)
	if err != nil {
		return nil, err
	}
	payload, err := verifySignature(jws, h, key)
	if err != nil {
		return nil, err
	}
	if err := s.validNonce(r.Context(), h); err != nil {
		return nil, err
	}
	req.payload = payload
	req.postAsGet = jws.Payload == ""
	return req, nil
}

// validPOSTRequest checks the HTTP request around the JWS and returns its
// body: no Replay-Nonce request header, the JOSE content type, and a body no
// larger than the configured bound.
func (s *Server) validPOSTRequest(r *http.Request) ([]byte, error) {
	// RFC 8555 6.5.1: the nonce travels in the protected header, where the
	// signature covers it; one in a request header is a client bug or a
	// probe, and is refused rather than ignored (as Boulder and Pebble do).
	if len(r.Header.Values("Replay-Nonce")) > 0 {
		return nil, acme.Malformed("a request must not carry a Replay-Nonce header: the nonce belongs in the JWS protected header")
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/jose+json" {
		return nil, WithStatus(http.StatusUnsupportedMediaType, acme.Malformed("Content-Type must be application/jose+json"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, acme.Malformed("reading the request body: %v", err)
	}
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		return nil, WithStatus(http.StatusRequestEntityTooLarge, acme.Malformed("request body is larger than %d bytes", s.cfg.MaxBodyBytes))
	}
	return body, nil
}

// parseJWS checks the JWS itself, before any key is known: the flattened
// serialization only, a strict protected header without b64 or crit, an
// allowed algorithm, a signature, and exactly one of jwk and kid, the one
// mode asks for.
func parseJWS(body []byte, mode keyMode) (*flattenedJWS, *protectedHeader, error) {
	// The outer structure: flattened JSON with exactly these three members. A
	// "header" member (unprotected header) or "signatures" (general
	// serialization) is refused, though go-jose would accept both.
	jws, err := parseFlattened(body)
	if err != nil {
		return nil, nil, err
	}
	if jws.Protected == "" {
		return nil, nil, acme.Malformed("JWS lacks a protected header")
	}
	headerJSON, err := base64.RawURLEncoding.DecodeString(jws.Protected)
	if err != nil {
		return nil, nil, acme.Malformed("protected header is not base64url: %v", err)
	}
	var h protectedHeader
	if err := decodeStrict(headerJSON, &h); err != nil {
		return nil, nil, acme.Malformed("protected header: %v", err)
	}
	if h.B64 != nil || len(h.Crit) > 0 {
		return nil, nil, acme.Malformed("the b64 and crit header parameters are not allowed")
	}
	if !slices.Contains(allowedAlgs, h.Alg) {
		return nil, nil, acme.BadSignatureAlgorithm(allowedAlgs, "JWS algorithm %q is not allowed (use one of %s)", h.Alg, strings.Join(allowedAlgs, ", "))
	}
	if jws.Signature == "" {
		return nil, nil, acme.Malformed("JWS lacks a signature")
	}
	hasJWK, hasKID := h.hasJWK(), h.KID != ""
	switch {
	case hasJWK && hasKID:
		return nil, nil, acme.Malformed("the protected header must have exactly one of jwk and kid, not both")
	case !hasJWK && !hasKID:
		return nil, nil, acme.Malformed("the protected header must have one of jwk and kid")
	case mode == needJWK && !hasJWK:
		return nil, nil, acme.Malformed("this request must be signed with the key in a jwk header, not a kid")
	case mode == needKID && !hasKID:
		return nil, nil, acme.Malformed("this request must name its account with kid, not carry a jwk")
	}
	return jws, &h, nil
}

// hasJWK says whether the header carries a jwk ("jwk": null is none).
func (h *protectedHeader) hasJWK() bool { return len(h.JWK) > 0 && string(h.JWK) != "null" }

// validPOSTURL checks that the signed url is the URL the request was sent to
// (RFC 8555 6.4), so that a signed request cannot be replayed elsewhere.
func (s *Server) validPOSTURL(r *http.Request, h *protectedHeader) error {
	if want := s.cfg.BaseURL + r.URL.RequestURI(); h.URL != want {
		return acme.Unauthorized("the JWS url %q is not the request URL %q", truncate(h.URL, 200), want)
	}
	return nil
}

// lookupKey finds the key that must have signed the request: the public key
// in the jwk header, or the current key of the account kid names. It returns
// the request so far (jwk, or account and its key) and that key, once the
// header's algorithm is one the key can make.
func (s *Server) lookupKey(ctx context.Context, h *protectedHeader) (*signedRequest, *jose.JSONWebKey, error) {
	req := &signedRequest{}
	var key *jose.JSONWebKey
	if h.hasJWK() {
		key = new(jose.JSONWebKey)
		if err := key.UnmarshalJSON(h.JWK); err != nil {
			return nil, nil, acme.BadPublicKey("jwk: %v", err)
		}
		if !key.IsPublic() {
			return nil, nil, acme.BadPublicKey("jwk must be a public key")
		}
		req.jwk = key
	} else {
		id, ok := strings.CutPrefix(h.KID, s.cfg.BaseURL+accountPath)
		if !ok || id == "" || strings.Contains(id, "/") {
			return nil, nil, acme.AccountDoesNotExist("kid %q is not an account URL of this server", truncate(h.KID, 200))
		}
		acct, akey, err := s.cfg.Core.Account(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		req.account, req.accountKey, key = acct, akey, akey
	}
	if err := algMatchesKey(h.Alg, key); err != nil {
		return nil, nil, err
	}
	return req, key, nil
}

// verifySignature checks the JWS signature with key and returns the payload.
func verifySignature(jws *flattenedJWS, h *protectedHeader, key *jose.JSONWebKey) ([]byte, error) {
	// The three members, already checked, in the compact serialization: the
	// same protected header, payload and signature, and go-jose need not
	// parse the JSON body a second time. A "." smuggled into a member makes
	// more than three parts, which it refuses.
	parsed, err := jose.ParseSigned(jws.Protected+"."+jws.Payload+"."+jws.Signature, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return nil, acme.Malformed("JWS does not parse: %v", err)
	}
	payload, err := parsed.Verify(key)
	if err != nil {
		return nil, acme.Malformed("JWS signature is invalid")
	}
	return payload, nil
}

// validNonce redeems the header's nonce (RFC 8555 6.5): one this service
// issued, unexpired, and never redeemed before, on this front end or another.
func (s *Server) validNonce(ctx context.Context, h *protectedHeader) error {
	return s.nonces.Redeem(ctx, h.Nonce)
}

// parseFlattened reads the outer JWS: a JSON object with exactly the members
// protected, payload and signature, each a string. A "header" member
// (unprotected header) or "signatures" (general serialization) is refused,
// though go-jose would accept both and merge an unprotected header in.
func parseFlattened(body []byte) (*flattenedJWS, error) {
	var members map[string]json.RawMessage
	if err := decodeStrict(body, &members); err != nil {
		return nil, acme.Malformed("request body is not a JWS: %v", err)
	}
	var jws flattenedJWS
	for k, v := range members {
		var dst *string
		switch k {
		case "protected":
			dst = &jws.Protected
		case "payload":
			dst = &jws.Payload
		case "signature":
			dst = &jws.Signature
		default:
			return nil, acme.Malformed("JWS member %q is not allowed: use the flattened JSON serialization with a protected header only", k)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, acme.Malformed("JWS member %q must be a string", k)
		}
	}
	// A missing payload is a detached payload (RFC 7515 Appendix F), which
	// would let the signature cover content the request does not carry.
	// POST-as-GET sends "payload": "".
	if _, ok := members["payload"]; !ok {
		return nil, acme.Malformed(`JWS has no "payload" member: detached payloads are not allowed (POST-as-GET sends "payload": "")`)
	}
	return &jws, nil
}

// maxRSABits is the largest RSA key a JWS is verified with.
const maxRSABits = 4096

// algMatchesKey refuses an algorithm the key cannot make (RFC 8555 6.2), and
// an RSA key too large to verify with cheaply.
func algMatchesKey(alg string, key *jose.JSONWebKey) error {
	ok := false
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		// Before the signature is checked, and so before the nonce: an RSA
		// verification grows with the square of the modulus, and a 64 KiB
		// body can carry a key of about 160,000 bits, seconds of CPU for any
		// stranger. Account keys are at most 4096 bits anyway.
		if k.N == nil || k.N.BitLen() > maxRSABits {
			bits := 0
			if k.N != nil {
				bits = k.N.BitLen()
			}
			return acme.BadPublicKey("RSA key of %d bits; at most %d are accepted", bits, maxRSABits)
		}
		ok = alg == "RS256"
	case *ecdsa.PublicKey:
		ok = (alg == "ES256" && k.Curve == elliptic.P256()) || (alg == "ES384" && k.Curve == elliptic.P384()) || (alg == "ES512" && k.Curve == elliptic.P521())
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return acme.BadSignatureAlgorithm(allowedAlgs, "algorithm %s does not match the %T key", alg, key.Key)
	}
	return nil
}

// decodePayload decodes a signed payload strictly into v. An empty payload
// (POST-as-GET) is refused where a body is needed.
func (req *signedRequest) decodePayload(v any) error {
	if req.postAsGet {
		return acme.Malformed("this request needs a JSON payload, not POST-as-GET")
	}
	if err := decodeStrict(req.payload, v); err != nil {
		return acme.Malformed("payload: %v", err)
	}
	return nil
}

// requirePostAsGet refuses a payload on a POST-as-GET resource.
func (req *signedRequest) requirePostAsGet() error {
	if !req.postAsGet {
		return acme.Malformed("POST-as-GET requests must have an empty payload")
	}
	return nil
}

func isConflict(err error) bool { return errors.Is(err, storage.ErrConflict) }
