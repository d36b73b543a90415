package records

import (
	"crypto/rand"
	"encoding/base64"
)

// NewID returns 128 random bits, base64url: the identifier a store gives a
// record whose caller left ID empty. acme normally chooses IDs itself; this
// only keeps an empty string from becoming a primary key.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// fillID gives *id a fresh identifier if it is empty.
func fillID(id *string) {
	if *id == "" {
		*id = NewID()
	}
}
