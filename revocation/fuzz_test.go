package revocation_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/anvil-pki/anvil/issuance/issuancetest"
	"github.com/anvil-pki/anvil/revocation"
)

// ocspSeeds are requests for the environment's one certificate, a serial it
// never issued and a foreign issuer, with and without nonces, and broken ones.
func ocspSeeds(t testing.TB, e *env) [][]byte {
	other := issuancetest.NewRoot(t)
	var seeds [][]byte
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, c := range []*x509.Certificate{e.certs[0], {SerialNumber: big.NewInt(0x5eed)}, {SerialNumber: big.NewInt(-1)}} {
			req, err := ocsp.CreateRequest(c, e.iss.Certificate(), &ocsp.RequestOptions{Hash: h})
			if err != nil {
				t.Fatal(err)
			}
			seeds = append(seeds, req, addNonce(t, req, []byte("0123456789abcdef")), addNonce(t, req, bytes.Repeat([]byte{1}, 200)), req[:len(req)-3])
		}
		req, _ := ocsp.CreateRequest(other.Cert, other.Cert, &ocsp.RequestOptions{Hash: h})
		seeds = append(seeds, req)
	}
	return append(seeds, nil, []byte{0x30, 0x00}, []byte("not DER"))
}

// FuzzOCSPRequest: parsing a request never panics; an accepted one has one
// CertID by SHA-1 or SHA-256, and x/crypto/ocsp's encoding of what was read
// parses back to the same CertID.
func FuzzOCSPRequest(f *testing.F) {
	for _, s := range ocspSeeds(f, newEnv(f, 1)) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := revocation.ParseOCSPRequest(raw)
		if err != nil {
			return
		}
		if req.HashAlgorithm != crypto.SHA1 && req.HashAlgorithm != crypto.SHA256 || req.SerialNumber == nil {
			t.Fatalf("accepted %+v", req)
		}
		again, err := req.Marshal()
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", req, err)
		}
		back, err := revocation.ParseOCSPRequest(again)
		if err != nil || back.HashAlgorithm != req.HashAlgorithm || back.SerialNumber.Cmp(req.SerialNumber) != 0 ||
			!bytes.Equal(back.IssuerNameHash, req.IssuerNameHash) || !bytes.Equal(back.IssuerKeyHash, req.IssuerKeyHash) {
			t.Fatalf("round trip: %+v -> %+v, %v", req, back, err)
		}
	})
}

// FuzzServeOCSP: whatever a stranger sends to the OCSP endpoint, by GET or
// POST, against a real issuer on a SoftHSM2 token and a real SQLite store
// holding one certificate, the answer is 200 with either a fixed unsigned
// error response or the cached response for that certificate, and the HSM
// signs at most twice in the whole run (one response per CertID hash for
// that one certificate).
//
// Each fuzzing process makes its own issuer and certificate, so an input is
// used either as it is (which%5 == 0) or XORed onto one of this process's
// requests for its certificate (SHA-1 or SHA-256, with or without a nonce):
// mutations then explore requests close to a real one.
func FuzzServeOCSP(f *testing.F) {
	e := newEnv(f, 1)
	var known [][]byte
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		req, err := ocsp.CreateRequest(e.certs[0], e.iss.Certificate(), &ocsp.RequestOptions{Hash: h})
		if err != nil {
			f.Fatal(err)
		}
		known = append(known, req, addNonce(f, req, []byte("0123456789abcdef")))
	}
	for _, s := range ocspSeeds(f, e) {
		f.Add(s, false, uint8(0))
		f.Add(s, true, uint8(0))
	}
	for which := uint8(1); which <= 4; which++ {
		f.Add([]byte(nil), which%2 == 0, which)
		f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, false, which)
	}
	handler := e.pub.Handler("/ocsp")
	base := e.tok.Stats().Signs
	fixed := [][]byte{ocsp.MalformedRequestErrorResponse, ocsp.UnauthorizedErrorResponse}
	f.Fuzz(func(t *testing.T, data []byte, get bool, which uint8) {
		raw := data
		if which%5 != 0 {
			b := known[which%5-1]
			raw = make([]byte, max(len(b), len(data)))
			copy(raw, b)
			for i, x := range data {
				raw[i] ^= x
			}
		}
		var r *http.Request
		if get {
			r = httptest.NewRequest(http.MethodGet, "/ocsp/"+base64.StdEncoding.EncodeToString(raw), nil)
		} else {
			r = httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(raw))
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
		}
		body := w.Body.Bytes()
		isFixed := false
		for _, b := range fixed {
			isFixed = isFixed || bytes.Equal(body, b)
		}
		if !isFixed {
			resp, err := ocsp.ParseResponseForCert(body, e.certs[0], e.iss.Certificate())
			if err != nil || resp.Status != ocsp.Good {
				t.Fatalf("answer is neither a fixed error nor the certificate's response: %v (%x)", err, body)
			}
		}
		if signs := e.tok.Stats().Signs - base; signs > 2 {
			t.Fatalf("%d HSM signatures in this run, want at most 2", signs)
		}
	})
}

// FuzzOCSPGETPath: any GET path decodes without panicking, and what it
// decodes to comes back from its standard base64 spelling.
func FuzzOCSPGETPath(f *testing.F) {
	for _, s := range []string{"/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBQ", "/MEMwQTA/MD0wOzAJBgUrDgMCGgUABBQ=", "/MEMwQTA_MD0w", "%", "/%zz", "//", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		raw, err := revocation.DecodeOCSPGET(path)
		if err != nil {
			return
		}
		back, err := revocation.DecodeOCSPGET("/" + base64.StdEncoding.EncodeToString(raw))
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("%q -> %x -> %x, %v", path, raw, back, err)
		}
	})
}
