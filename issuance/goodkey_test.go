package issuance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
)

func TestCheckPublicKeyRSA(t *testing.T) {
	good, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPublicKey(&good.PublicKey); err != nil {
		t.Fatalf("good key refused: %v", err)
	}
	// A 2048-bit modulus with the factor 751.
	p, _ := rand.Prime(rand.Reader, 2038)
	smallFactor := new(big.Int).Mul(p, big.NewInt(751))
	for smallFactor.BitLen() != 2048 {
		p, _ = rand.Prime(rand.Reader, 2038)
		smallFactor.Mul(p, big.NewInt(751))
	}
	// Two 1024-bit primes a few steps apart: Fermat's method finds them at once.
	q, _ := rand.Prime(rand.Reader, 1024)
	r := new(big.Int).Add(q, big.NewInt(2))
	for !r.ProbablyPrime(20) {
		r.Add(r, big.NewInt(2))
	}
	close := new(big.Int).Mul(q, r)
	for name, c := range map[string]struct {
		key  *rsa.PublicKey
		says string
	}{
		"small factor": {&rsa.PublicKey{N: smallFactor, E: 65537}, "small prime 751"},
		"close primes": {&rsa.PublicKey{N: close, E: 65537}, "Fermat"},
		"exponent 3":   {&rsa.PublicKey{N: good.N, E: 3}, "exponent 3"},
		"even":         {&rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 2047), E: 65537}, "even"},
		"2047 bits":    {&rsa.PublicKey{N: new(big.Int).Rsh(good.N, 1), E: 65537}, "2047 bits"},
	} {
		err := CheckPublicKey(c.key)
		if !errors.Is(err, ErrBadPublicKey) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want ErrBadPublicKey saying %q", name, err, c.says)
		}
	}
}

func TestCheckPublicKeyECDSA(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, _ := ecdsa.GenerateKey(curve, rand.Reader)
		if err := CheckPublicKey(&k.PublicKey); err != nil {
			t.Fatalf("%s refused: %v", curve.Params().Name, err)
		}
		off := &ecdsa.PublicKey{Curve: curve, X: k.X, Y: new(big.Int).Add(k.Y, big.NewInt(1))}
		if err := CheckPublicKey(off); !errors.Is(err, ErrBadPublicKey) || !strings.Contains(err.Error(), "not on the curve") {
			t.Errorf("%s point off the curve: %v", curve.Params().Name, err)
		}
		outOfRange := &ecdsa.PublicKey{Curve: curve, X: curve.Params().P, Y: k.Y}
		if err := CheckPublicKey(outOfRange); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("%s coordinate = p: %v", curve.Params().Name, err)
		}
		inf := &ecdsa.PublicKey{Curve: curve, X: new(big.Int), Y: new(big.Int)}
		if err := CheckPublicKey(inf); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("%s point at infinity: %v", curve.Params().Name, err)
		}
	}
	k521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err := CheckPublicKey(&k521.PublicKey); !errors.Is(err, ErrBadPublicKey) {
		t.Errorf("P-521 accepted: %v", err)
	}
	if err := CheckPublicKey("not a key"); !errors.Is(err, ErrBadPublicKey) {
		t.Errorf("string accepted: %v", err)
	}
}

func TestNormalizeDNSName(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":           "example.com",
		"*.example.com":         "*.example.com",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"a-b.c-d.example":       "a-b.c-d.example",
	} {
		got, err := NormalizeDNSName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeDNSName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "*.com", "*", "a.*.com", "a*.com", "a..com", ".a.com", "a.com.", "-a.com", "a-.com",
		"ab--c.com", "a_b.com", "a b.com", "1.2.3.4", "::1", "a.123", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "com", "é.com",
	} {
		if got, err := NormalizeDNSName(in); !errors.Is(err, ErrRejectedName) {
			t.Errorf("NormalizeDNSName(%q) = %q, %v; want ErrRejectedName", in, got, err)
		}
	}
}

func TestNormalizeIP(t *testing.T) {
	ip, err := NormalizeIP(net.ParseIP("::ffff:10.0.0.1"))
	if err != nil || len(ip) != 4 || ip.String() != "10.0.0.1" {
		t.Fatalf("mapped: %v %v", ip, err)
	}
	if _, err := NormalizeIP(net.IP{1, 2, 3}); !errors.Is(err, ErrRejectedName) {
		t.Fatalf("3 bytes: %v", err)
	}
	if _, err := NormalizeIP(net.IPv6unspecified); !errors.Is(err, ErrRejectedName) {
		t.Fatalf("::: %v", err)
	}
}

func TestSerials(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s, err := newSerial(0x42)
		if err != nil {
			t.Fatal(err)
		}
		b := s.Bytes()
		if len(b) != 17 || b[0] != 0x42 || s.Sign() <= 0 {
			t.Fatalf("serial %x: want 17 octets starting 42", b)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", b)
		}
		seen[s.String()] = true
	}
}
