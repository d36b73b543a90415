package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage/ledger"
)

type atomicCert struct {
	p atomic.Pointer[tls.Certificate]
}

func (a *atomicCert) Load() *tls.Certificate   { return a.p.Load() }
func (a *atomicCert) Store(c *tls.Certificate) { a.p.Store(c) }

// ensureTLSCertificate loads the server's TLS certificate, first issuing it from
// the CA itself when tls.issue_for asks for that and the files are missing,
// stale, or for other names. The issuance goes through the same lint and ledger
// as every certificate, under a service without the ACME identifier policy: the
// names come from the operator's configuration, not from a client.
func (s *server) ensureTLSCertificate(ctx context.Context, issuers []*issuance.Issuer, profiles []*issuance.Profile) (*certHolder, error) {
	h := &certHolder{}
	if len(s.cfg.TLS.IssueFor) > 0 {
		svc, err := issuance.NewService(issuance.ServiceConfig{
			Issuers: issuers, Profiles: profiles, DefaultProfile: s.cfg.DefaultProfile,
			Ledger: ledger.Issuance{Store: s.store}, SerialPrefix: byte(s.cfg.SerialPrefix), Logger: s.log,
		})
		if err != nil {
			return nil, err
		}
		s.tlsIssuer = svc
		if err := s.issueTLSIfNeeded(ctx); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLS.Cert, s.cfg.TLS.Key)
	if err != nil {
		return nil, err
	}
	h.cert.Store(&cert)
	return h, nil
}

// issueTLSIfNeeded (re)issues the server certificate when it is missing, names
// other names, or has less than a third of its life left.
func (s *server) issueTLSIfNeeded(ctx context.Context) error {
	dnsNames, ips := splitNames(s.cfg.TLS.IssueFor)
	if leaf, err := config.ReadCertificate(s.cfg.TLS.Cert); err == nil {
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		sameNames := slices.Equal(sortedCopy(leaf.DNSNames), sortedCopy(dnsNames)) && len(leaf.IPAddresses) == len(ips)
		if sameNames && time.Until(leaf.NotAfter) > life/3 {
			return nil
		}
	}
	key, err := loadOrCreateServerKey(s.cfg.TLS.Key)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: dnsNames, IPAddresses: ips}, key)
	if err != nil {
		return err
	}
	issued, err := s.tlsIssuer.Issue(ctx, issuance.Request{CSR: csr, DNSNames: dnsNames, IPAddresses: ips, Profile: s.cfg.TLS.Profile, Requester: "server-tls"})
	if err != nil {
		return fmt.Errorf("issuing the server certificate for %v: %w", s.cfg.TLS.IssueFor, err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.DER})
	for _, c := range issued.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := writeAtomic(s.cfg.TLS.Cert, out, 0o644); err != nil {
		return err
	}
	s.log.Info("server TLS certificate issued", "names", s.cfg.TLS.IssueFor, "serial", fmt.Sprintf("%x", issued.Cert.SerialNumber), "not_after", issued.Cert.NotAfter)
	return nil
}

// renewLoop renews a self-issued server certificate in time.
func (h *certHolder) renewLoop(ctx context.Context, s *server) {
	if s.tlsIssuer == nil {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.issueTLSIfNeeded(ctx); err != nil {
				s.log.Error("renewing the server certificate", "error", err)
				continue
			}
			if cert, err := tls.LoadX509KeyPair(s.cfg.TLS.Cert, s.cfg.TLS.Key); err == nil {
				h.cert.Store(&cert)
			}
		}
	}
}

func loadOrCreateServerKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("tls.key: %s holds no PEM key", path)
		}
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls.key: %w", err)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return k, writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeAtomic replaces path with data through a temporary file and a rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
