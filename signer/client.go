package signer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/issuance"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// ClientConfig names a signer and the front end's credentials.
type ClientConfig struct {
	URL      string // https://signer.internal:14100
	CertFile string // the front end's client certificate
	KeyFile  string
	CAFile   string // the CA of the signer's certificate
	// Timeout bounds one attempt (default 30 s, longer than the signer's own
	// 20 s bound on its work); Attempts is how many are made (default 3).
	// An issuance is retried only where nothing can have been signed twice:
	// after no answer (the signer then answers the same request from its
	// ledger) and after "unavailable" or "in progress" answers.
	Timeout  time.Duration
	Attempts int
}

// Client is an acme.Issuer backed by a remote signer.
type Client struct {
	cfg  ClientConfig
	http *http.Client
	info atomic.Pointer[Info]
}

var _ acme.Issuer = (*Client)(nil)

// NewClient connects to a signer and reads its profiles and chains.
func NewClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("signer client certificate: %w", err)
	}
	pool, err := loadPool(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("signer CA: %w", err)
	}
	c := &Client{cfg: cfg, http: &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13},
			MaxIdleConnsPerHost: 64,
			ForceAttemptHTTP2:   true,
		},
	}}
	if err := c.refreshInfo(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) refreshInfo(ctx context.Context) error {
	var info Info
	if err := c.call(ctx, http.MethodGet, "/v1/info", nil, &info); err != nil {
		return fmt.Errorf("signer %s: %w", c.cfg.URL, err)
	}
	c.info.Store(&info)
	return nil
}

// Issue asks the signer for a certificate.
func (c *Client) Issue(ctx context.Context, req issuance.Request) (*issuance.Issued, error) {
	body := IssueRequest{CSR: req.CSR, DNSNames: req.DNSNames, Profile: req.Profile, Requester: req.Requester}
	for _, ip := range req.IPAddresses {
		body.IPAddresses = append(body.IPAddresses, ip.String())
	}
	var resp IssueResponse
	if err := c.call(ctx, http.MethodPost, "/v1/issue", body, &resp); err != nil {
		var na *noAnswer
		if errors.As(err, &na) {
			return nil, fmt.Errorf("%w: %w", issuance.ErrOutcomeUnknown, err)
		}
		return nil, err
	}
	cert, err := checkIssued(&resp, req)
	if err != nil {
		return nil, fmt.Errorf("%w: the signer's answer: %w", issuance.ErrSignature, err)
	}
	return &issuance.Issued{DER: resp.DER, Cert: cert, Chain: resp.Chain, Issuer: resp.Issuer, Profile: resp.Profile}, nil
}

// checkIssued makes sure a certificate from the signer is what was asked for
// before it stands for an order: signed by the first certificate of the chain
// given with it, from an issuer the signer announced, for the CSR's key and
// exactly the requested names.
func checkIssued(resp *IssueResponse, req issuance.Request) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(resp.DER)
	if err != nil {
		return nil, fmt.Errorf("certificate does not parse: %w", err)
	}
	if len(resp.Chain) == 0 {
		return nil, errors.New("no chain came with the certificate")
	}
	parent, err := x509.ParseCertificate(resp.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("issuer certificate does not parse: %w", err)
	}
	if err := cert.CheckSignatureFrom(parent); err != nil {
		return nil, fmt.Errorf("certificate is not signed by its chain: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := matches(cert, csr.RawSubjectPublicKeyInfo, req.DNSNames, req.IPAddresses); err != nil {
		return nil, err
	}
	return cert, nil
}

// noAnswer is a call that got no HTTP answer: the request may have been
// handled all the same.
type noAnswer struct{ err error }

func (e *noAnswer) Error() string { return e.err.Error() }
func (e *noAnswer) Unwrap() []error {
	return []error{issuance.ErrSignerUnavailable, e.err}
}

// Chains returns an issuer's chains as the signer reported them.
func (c *Client) Chains(issuer string) ([][][]byte, bool) {
	info := c.info.Load()
	ch, ok := info.Chains[issuer]
	if !ok {
		// An issuer added since: ask again once.
		if c.refreshInfo(context.Background()) == nil {
			ch, ok = c.info.Load().Chains[issuer]
		}
	}
	return ch, ok
}

// ProfileNames lists the signer's profiles, default first.
func (c *Client) ProfileNames() []acme.ProfileInfo {
	var out []acme.ProfileInfo
	for _, p := range c.info.Load().Profiles {
		out = append(out, acme.ProfileInfo{Name: p.Name, Description: p.Description})
	}
	return out
}

// call makes one call with retries on network errors and 5xx answers.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	var last error
	for attempt := 1; attempt <= c.cfg.Attempts; attempt++ {
		retry, err := c.once(ctx, method, path, payload, out)
		if err == nil {
			return nil
		}
		last = err
		if !retry || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	return last
}

// once makes one attempt; retry says whether another may help.
func (c *Client) once(ctx context.Context, method, path string, payload []byte, out any) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.cfg.URL, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return false, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return true, &noAnswer{fmt.Errorf("signer %s: %w", c.cfg.URL, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return true, &noAnswer{fmt.Errorf("signer %s: reading the answer: %w", c.cfg.URL, err)}
	}
	if resp.StatusCode == http.StatusOK {
		return false, json.Unmarshal(body, out)
	}
	var p Problem
	if json.Unmarshal(body, &p) != nil {
		p = Problem{Kind: "internal", Detail: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	}
	if kindErr, transient := errorOf(p.Kind); kindErr != nil {
		// Only a transient kind says for sure that nothing was signed, or
		// that the ledger will answer the same request; after "ledger" or
		// "signature" the HSM may have signed, and a retry could sign again.
		return transient, fmt.Errorf("%w: signer: %s", kindErr, p.Detail)
	}
	if resp.StatusCode >= 500 {
		// An answer that does not say what happened counts as none: a read
		// may be retried, an issuance is asked again later, as the same
		// request, to be answered from the ledger.
		return method == http.MethodGet, &noAnswer{fmt.Errorf("signer answered %d: %s", resp.StatusCode, p.Detail)}
	}
	return false, fmt.Errorf("signer refused the request (%d %s): %s", resp.StatusCode, p.Kind, p.Detail)
}
