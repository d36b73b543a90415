package acme

import (
	"crypto/rand"
	"encoding/base64"
)

// newID returns an unguessable identifier for a record: 128 random bits.
func newID() string { return randomB64(16) }

// newToken returns a challenge token: 256 random bits, base64url (RFC 8555
// 8.1 asks for at least 128).
func newToken() string { return randomB64(32) }

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}
