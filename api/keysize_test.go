package api

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/anvil-pki/anvil/acme"
)

// A JWS whose jwk is an RSA key larger than any account key is refused before
// its signature is verified: verification cost grows with the square of the
// modulus, and it comes before the nonce check, so any stranger could spend
// seconds of CPU per 64 KiB request (a 65,536-bit modulus took 0.27 s, a
// 262,144-bit one 3.8 s, on the 2-core test machine).
func TestHugeRSAJWKRefusedBeforeVerify(t *testing.T) {
	for _, bits := range []int{4097, 16384, 160000} {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		n.SetBit(n, bits-1, 1)
		n.SetBit(n, 0, 1)
		err := algMatchesKey("RS256", &jose.JSONWebKey{Key: &rsa.PublicKey{N: n, E: 65537}})
		var p *acme.Problem
		if !errors.As(err, &p) || p.Type != acme.BadPublicKey("").Type {
			t.Errorf("%d-bit RSA jwk: %v, want badPublicKey", bits, err)
		}
	}
	if err := algMatchesKey("RS256", &jose.JSONWebKey{Key: &rsa.PublicKey{}}); err == nil {
		t.Error("RSA jwk without a modulus accepted")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := algMatchesKey("RS256", &jose.JSONWebKey{Key: &key.PublicKey}); err != nil {
		t.Fatalf("2048-bit RSA jwk: %v", err)
	}
}
