package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/issuance"
)

// The front end takes nothing from the signer on trust: a certificate for
// another key, for other names, or not signed by the chain given with it is
// refused.
func TestClientChecksWhatTheSignerReturns(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	otherKey := mustKey(t)
	otherDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, otherKey.Public(), otherKey)

	subject := mustKey(t)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}, subject)
	leaf := func(key *ecdsa.PrivateKey, names ...string) []byte {
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: names,
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, caCert, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	req := issuance.Request{CSR: csrDER, DNSNames: []string{"a.example.com"}}
	for _, tc := range []struct {
		name  string
		resp  IssueResponse
		wants string
	}{
		{"the right certificate", IssueResponse{DER: leaf(subject, "a.example.com"), Chain: [][]byte{caDER}}, ""},
		{"another key", IssueResponse{DER: leaf(mustKey(t), "a.example.com"), Chain: [][]byte{caDER}}, "another public key"},
		{"other names", IssueResponse{DER: leaf(subject, "a.example.com", "b.example.com"), Chain: [][]byte{caDER}}, "names"},
		{"not signed by its chain", IssueResponse{DER: leaf(subject, "a.example.com"), Chain: [][]byte{otherDER}}, "not signed by its chain"},
		{"no chain", IssueResponse{DER: leaf(subject, "a.example.com")}, "no chain"},
		{"garbage", IssueResponse{DER: []byte("junk"), Chain: [][]byte{caDER}}, "does not parse"},
	} {
		_, err := checkIssued(&tc.resp, req)
		if tc.wants == "" && err != nil || tc.wants != "" && (err == nil || !strings.Contains(err.Error(), tc.wants)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.wants)
		}
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
