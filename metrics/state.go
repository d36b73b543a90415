package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CRLState is what is published for one issuer's CRL, read at scrape time.
type CRLState struct {
	Issuer     string // the issuer's configured name, or a file CRL's issuer common name
	Source     string // "store" (made by this CA) or "file" (an offline root's, served from pki.files)
	Shard      int    // the CRL's partition (issuers[].crl_shards); 0 for an unpartitioned CRL and for files
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	Size       int // DER bytes
	Entries    int // revoked certificates listed
}

// CertificateState is one CA certificate the process has loaded: an issuer,
// a certificate of an issuer's chain, or a certificate in pki.files.
type CertificateState struct {
	Name     string // issuer name, or the certificate's subject common name
	Role     string // "issuer", "intermediate" or "root"
	NotAfter time.Time
}

// PublisherCounts are the revocation publisher's own counters.
type PublisherCounts struct {
	OCSPCacheHits, OCSPSignatures, CRLsPublished int64
}

// stateCollector reports gauges computed when Prometheus scrapes: the time
// left on each CA certificate and CRL, and the publisher's counters.
type stateCollector struct {
	mu        sync.Mutex
	crls      func(ctx context.Context) []CRLState
	certs     []CertificateState
	publisher func() PublisherCounts
	now       func() time.Time
}

var (
	descCRLAge = prometheus.NewDesc("anvil_crl_age_seconds",
		"Seconds since thisUpdate of the current CRL.", []string{"issuer", "source", "shard"}, nil)
	descCRLNext = prometheus.NewDesc("anvil_crl_next_update_seconds",
		"Seconds until nextUpdate of the current CRL (negative once it has passed).", []string{"issuer", "source", "shard"}, nil)
	descCRLSize = prometheus.NewDesc("anvil_crl_size_bytes",
		"Size of the current CRL, DER.", []string{"issuer", "source", "shard"}, nil)
	descCRLEntries = prometheus.NewDesc("anvil_crl_entries",
		"Revoked certificates listed in the current CRL.", []string{"issuer", "source", "shard"}, nil)
	descCRLNumber = prometheus.NewDesc("anvil_crl_number",
		"CRL number of the current CRL.", []string{"issuer", "source", "shard"}, nil)
	descCertLeft = prometheus.NewDesc("anvil_ca_certificate_not_after_seconds",
		"Seconds until notAfter of a CA certificate the process has loaded (negative once expired).", []string{"name", "role"}, nil)
	descCertExpiry = prometheus.NewDesc("anvil_ca_certificate_not_after_timestamp_seconds",
		"notAfter of a CA certificate the process has loaded, as a Unix time.", []string{"name", "role"}, nil)
	descOCSPHits = prometheus.NewDesc("anvil_ocsp_cache_hits_total",
		"OCSP requests answered from the response cache, without an HSM signature.", nil, nil)
	descOCSPSigs = prometheus.NewDesc("anvil_ocsp_signatures_total",
		"OCSP responses signed in the HSM.", nil, nil)
	descCRLsPublished = prometheus.NewDesc("anvil_crls_published_total",
		"CRLs signed and stored by this process.", nil, nil)
)

// SetCRLSource sets the function read at each scrape for the CRLs.
func (m *Metrics) SetCRLSource(f func(ctx context.Context) []CRLState) {
	m.state.mu.Lock()
	m.state.crls = f
	m.state.mu.Unlock()
}

// SetCertificates records the CA certificates whose expiry is reported.
func (m *Metrics) SetCertificates(certs []CertificateState) {
	m.state.mu.Lock()
	m.state.certs = certs
	m.state.mu.Unlock()
}

// SetPublisherSource sets the function read at each scrape for the
// revocation publisher's counters.
func (m *Metrics) SetPublisherSource(f func() PublisherCounts) {
	m.state.mu.Lock()
	m.state.publisher = f
	m.state.mu.Unlock()
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCRLAge, descCRLNext, descCRLSize, descCRLEntries, descCRLNumber,
		descCertLeft, descCertExpiry, descOCSPHits, descOCSPSigs, descCRLsPublished} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	crls, certs, pub := c.crls, c.certs, c.publisher
	c.mu.Unlock()
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if crls != nil {
		// A scrape must not hang on a stuck database.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, s := range crls(ctx) {
			shard := strconv.Itoa(s.Shard)
			gauge(descCRLAge, now.Sub(s.ThisUpdate).Seconds(), s.Issuer, s.Source, shard)
			gauge(descCRLNext, s.NextUpdate.Sub(now).Seconds(), s.Issuer, s.Source, shard)
			gauge(descCRLSize, float64(s.Size), s.Issuer, s.Source, shard)
			gauge(descCRLEntries, float64(s.Entries), s.Issuer, s.Source, shard)
			gauge(descCRLNumber, float64(s.Number), s.Issuer, s.Source, shard)
		}
		cancel()
	}
	for _, s := range certs {
		gauge(descCertLeft, s.NotAfter.Sub(now).Seconds(), s.Name, s.Role)
		gauge(descCertExpiry, float64(s.NotAfter.Unix()), s.Name, s.Role)
	}
	if pub != nil {
		p := pub()
		ch <- prometheus.MustNewConstMetric(descOCSPHits, prometheus.CounterValue, float64(p.OCSPCacheHits))
		ch <- prometheus.MustNewConstMetric(descOCSPSigs, prometheus.CounterValue, float64(p.OCSPSignatures))
		ch <- prometheus.MustNewConstMetric(descCRLsPublished, prometheus.CounterValue, float64(p.CRLsPublished))
	}
}
