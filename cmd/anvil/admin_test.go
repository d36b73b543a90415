package main

import (
	"strings"
	"testing"
)

// EAB key IDs go on command lines (certbot --eab-kid, lego --kid, anvil admin
// eab revoke): none may look like a flag, and they must not repeat.
func TestEABKeyIDsAreSafeArguments(t *testing.T) {
	seen := map[string]bool{}
	for range 5000 {
		id := newEABKeyID()
		if strings.HasPrefix(id, "-") || len(id) != 24 {
			t.Fatalf("key ID %q: starts with '-' or is not 24 characters", id)
		}
		if seen[id] {
			t.Fatalf("key ID %q made twice", id)
		}
		seen[id] = true
	}
}
