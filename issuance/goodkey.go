package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"sync"
)

// CheckPublicKey accepts only the subscriber keys a public-trust CA accepts:
// RSA with a 2048-, 3072- or 4096-bit modulus and e = 65537, and ECDSA on P-256
// or P-384. RSA moduli with a small prime factor or factors close enough for
// Fermat's method to find are refused; ECDSA points are fully validated.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return checkRSA(k)
	case *ecdsa.PublicKey:
		return checkECDSA(k)
	case nil:
		return fmt.Errorf("%w: no public key", ErrBadPublicKey)
	}
	return fmt.Errorf("%w: key type %T is not accepted (RSA or ECDSA only)", ErrBadPublicKey, pub)
}

func checkRSA(k *rsa.PublicKey) error {
	if k.N == nil {
		return fmt.Errorf("%w: RSA key without modulus", ErrBadPublicKey)
	}
	switch bits := k.N.BitLen(); bits {
	case 2048, 3072, 4096:
	default:
		return fmt.Errorf("%w: RSA modulus of %d bits; want 2048, 3072 or 4096", ErrBadPublicKey, bits)
	}
	if k.E != 65537 {
		return fmt.Errorf("%w: RSA public exponent %d; want 65537", ErrBadPublicKey, k.E)
	}
	if k.N.Bit(0) == 0 {
		return fmt.Errorf("%w: RSA modulus is even", ErrBadPublicKey)
	}
	if g := new(big.Int).GCD(nil, nil, k.N, smallPrimesProduct()); g.Cmp(big.NewInt(1)) != 0 {
		return fmt.Errorf("%w: RSA modulus is divisible by the small prime %s", ErrBadPublicKey, g)
	}
	if fermatFactors(k.N, fermatRounds) {
		return fmt.Errorf("%w: RSA modulus factors by Fermat's method (its primes are too close)", ErrBadPublicKey)
	}
	return nil
}

func checkECDSA(k *ecdsa.PublicKey) error {
	if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
		name := "unknown"
		if k.Curve != nil {
			name = k.Curve.Params().Name
		}
		return fmt.Errorf("%w: ECDSA curve %s; want P-256 or P-384", ErrBadPublicKey, name)
	}
	if k.X == nil || k.Y == nil {
		return fmt.Errorf("%w: ECDSA key without a point", ErrBadPublicKey)
	}
	// NIST SP 800-56A 5.6.2.3.4: not the point at infinity, coordinates in
	// [0, p-1], on the curve. Both curves have cofactor 1, so a point on the
	// curve is in the prime-order group. ECDH performs the on-curve check.
	p := k.Curve.Params().P
	if k.X.Sign() < 0 || k.Y.Sign() < 0 || k.X.Cmp(p) >= 0 || k.Y.Cmp(p) >= 0 {
		return fmt.Errorf("%w: ECDSA coordinates out of range", ErrBadPublicKey)
	}
	if k.X.Sign() == 0 && k.Y.Sign() == 0 {
		return fmt.Errorf("%w: ECDSA point at infinity", ErrBadPublicKey)
	}
	if _, err := k.ECDH(); err != nil {
		return fmt.Errorf("%w: ECDSA point not on the curve: %v", ErrBadPublicKey, err)
	}
	return nil
}

// smallPrimeBound follows Boulder's goodkey: every prime below 752.
const smallPrimeBound = 752

var smallPrimesProduct = sync.OnceValue(func() *big.Int {
	prod := big.NewInt(1)
	for n := int64(2); n < smallPrimeBound; n++ {
		if big.NewInt(n).ProbablyPrime(1) {
			prod.Mul(prod, big.NewInt(n))
		}
	}
	return prod
})

// fermatRounds is how far from sqrt(N) Fermat's method looks. Keys made by a
// sound generator are astronomically far from it; a broken one (CVE-2022-26320)
// lands within a few rounds.
const fermatRounds = 100

// fermatFactors reports whether N = a² - b² for some a in [ceil(sqrt N), +rounds).
func fermatFactors(n *big.Int, rounds int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) != 0 {
		a.Add(a, big.NewInt(1))
	} else {
		return true // a perfect square has the factor a twice
	}
	b2 := new(big.Int).Mul(a, a)
	b2.Sub(b2, n)
	step := new(big.Int).Lsh(a, 1)
	step.Add(step, big.NewInt(1)) // (a+1)² - a² = 2a + 1
	two := big.NewInt(2)
	root := new(big.Int)
	for i := 0; i < rounds; i++ {
		if maybeSquare(b2) {
			root.Sqrt(b2)
			if new(big.Int).Mul(root, root).Cmp(b2) == 0 {
				return true
			}
		}
		b2.Add(b2, step)
		step.Add(step, two)
	}
	return false
}

// maybeSquare filters out most non-squares cheaply: a square is a quadratic
// residue modulo 64, 63, 65 and 11.
func maybeSquare(x *big.Int) bool {
	var m big.Int
	for _, mod := range []int64{64, 63, 65, 11} {
		r := m.Mod(x, big.NewInt(mod)).Int64()
		if !quadraticResidue(r, mod) {
			return false
		}
	}
	return true
}

var residues = sync.OnceValue(func() map[int64]map[int64]bool {
	out := map[int64]map[int64]bool{}
	for _, mod := range []int64{64, 63, 65, 11} {
		out[mod] = map[int64]bool{}
		for i := int64(0); i < mod; i++ {
			out[mod][i*i%mod] = true
		}
	}
	return out
})

func quadraticResidue(r, mod int64) bool { return residues()[mod][r] }
