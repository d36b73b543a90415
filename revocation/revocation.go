// Package revocation publishes what the CA has revoked: a CRL per issuer,
// regenerated on a schedule and soon after each revocation by one node at a
// time and stored for every node to serve, and an OCSP responder (RFC 6960,
// RFC 5019 profile) whose signed responses are cached and refreshed before
// they expire, so that a burst of requests does not become a burst of HSM
// signatures. It serves both, with the CA certificates, over plain HTTP at the
// URLs the certificates carry.
//
// It signs nothing itself: CRLs and OCSP responses are signed through package
// issuance, which lints CRLs first and verifies every HSM signature. It never
// changes a revocation; it only reads them from storage.
package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anvil-pki/anvil/audit"
	"golang.org/x/sync/singleflight"

	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/storage"
)

// Config tunes publication.
type Config struct {
	// CRLValidity is nextUpdate - thisUpdate (default 7 days; the Baseline
	// Requirements allow 10 for CRLs of subscriber certificates).
	CRLValidity time.Duration
	// CRLRegenerate is how old a CRL may get before it is made again even
	// without a new revocation (default 6 hours).
	CRLRegenerate time.Duration
	// CRLCheckInterval is how often the publisher looks for new revocations:
	// the bound on how late a revocation reaches the CRL (default 15 s).
	CRLCheckInterval time.Duration
	// OCSPValidity is nextUpdate - thisUpdate of OCSP responses (default 4
	// days); a cached response is signed again when half of it has passed.
	OCSPValidity time.Duration
	// Holder names this node in the leases that keep CRL generation to one
	// node at a time.
	Holder string
	// Audit records each CRL published; default none.
	Audit  Auditor
	Logger *slog.Logger
	Now    func() time.Time
}

// Auditor is what the publisher needs of the audit log.
type Auditor interface {
	Record(ctx context.Context, ev audit.Event) error
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CRLValidity, 7*24*time.Hour)
	def(&c.CRLRegenerate, 6*time.Hour)
	def(&c.CRLCheckInterval, 15*time.Second)
	def(&c.OCSPValidity, 4*24*time.Hour)
	if c.Holder == "" {
		host, _ := os.Hostname()
		c.Holder = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if c.Audit == nil {
		c.Audit = audit.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Store is what the publisher needs of storage: the revocations and ledger
// entries it reads, the CRLs it stores for every node to serve, and the lease
// that makes one node at a time the publisher of an issuer's CRLs. It never
// writes a revocation. storage.Store satisfies it.
type Store interface {
	GetCertificate(ctx context.Context, serial string) (*storage.Certificate, error)
	PutCRL(ctx context.Context, c *storage.CRL) error
	ListRevokedShard(ctx context.Context, issuer string, shard int, expiresAfter time.Time) ([]storage.Revoked, error)
	RevocationsByShard(ctx context.Context, issuer string) ([]storage.ShardRevocations, error)
	GetCRLShard(ctx context.Context, issuer string, shard int) (*storage.CRL, error)
	CRLHeads(ctx context.Context, issuer string) ([]storage.CRL, error)
	TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
}

// CRLRequests is the optional part of a Store: where operators' requests for
// a new CRL (`anvil admin crl regenerate`) are read. storage.Admin includes
// it; a Store without it never sees a request.
type CRLRequests interface {
	CRLRequested(ctx context.Context, issuer string) (time.Time, error)
}

var (
	_ Store       = storage.Store(nil)
	_ CRLRequests = storage.Admin(nil)
)

// Publisher publishes CRLs and answers OCSP for a set of issuers.
type Publisher struct {
	cfg     Config
	store   Store
	issuers []*issuerState
	log     *slog.Logger
	files   map[string]file // URL path -> static file (CA certificates, offline CRLs)
	wake    chan struct{}
	flight  singleflight.Group // one OCSP signature per response, however many ask at once

	metrics Metrics
}

// Metrics counts what the publisher did, for /metrics and tests.
type Metrics struct {
	OCSPRequests   atomic.Int64 // requests answered with a signed response (good or revoked)
	OCSPCacheHits  atomic.Int64 // of those, answered from the cache
	OCSPSignatures atomic.Int64 // OCSP responses signed in the HSM
	OCSPErrors     atomic.Int64 // malformed, unauthorized (unknown issuer or serial) or failed requests
	CRLsPublished  atomic.Int64 // CRLs signed and stored by this node
}

// issuerState is one issuer and what is published for it.
type issuerState struct {
	iss       *issuance.Issuer
	ocsp      *issuance.OCSPSigner
	crlPath   string // URL path of its CRL (of shard 0)
	shardDir  string // URL path below which shards 1.. and the list are served
	certPath  string // URL path of its certificate
	nameHash  map[crypto.Hash][]byte
	keyHash   map[crypto.Hash][]byte
	responses sync.Map // cacheKey -> *cachedResponse

	mu     sync.Mutex
	shards map[int]shardState // what this node last made, per shard
	made   bool               // whether this node made a CRL since it started

	crlCache  [issuance.MaxCRLShards]cachedCRL // per shard
	listCache cachedList
}

// shardState is what one shard's CRL held when this node last made it.
type shardState struct {
	count  int       // revocations counted
	latest time.Time // the latest revocation then
}

// New builds a publisher for the issuers the OCSP signers answer for (each with
// the issuer's own key or a delegated responder). files maps URL paths to
// static files to serve with them: the root certificate, the offline root's
// CRL; PEM or DER on disk, served as DER.
func New(ctx context.Context, cfg Config, store Store, signers []*issuance.OCSPSigner, files map[string]string) (*Publisher, error) {
	cfg.setDefaults()
	p := &Publisher{cfg: cfg, store: store, log: cfg.Logger, files: map[string]file{}, wake: make(chan struct{}, 1)}
	for _, o := range signers {
		iss := o.Issuer()
		st := &issuerState{iss: iss, ocsp: o, nameHash: map[crypto.Hash][]byte{}, keyHash: map[crypto.Hash][]byte{}, shards: map[int]shardState{}}
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			nh, kh, err := iss.IssuerHashes(h)
			if err != nil {
				return nil, err
			}
			st.nameHash[h], st.keyHash[h] = nh, kh
		}
		if u := iss.URLs().CRLURL; u != "" {
			pu, err := url.Parse(u)
			if err != nil {
				return nil, fmt.Errorf("issuer %s: crl_url: %w", iss.Name(), err)
			}
			st.crlPath = pu.Path
			lu, err := url.Parse(iss.URLs().CRLListURL())
			if err != nil {
				return nil, fmt.Errorf("issuer %s: crl_url: %w", iss.Name(), err)
			}
			st.shardDir = strings.TrimSuffix(lu.Path, "crls.json")
		}
		if u := iss.URLs().IssuerURL; u != "" {
			pu, err := url.Parse(u)
			if err != nil {
				return nil, fmt.Errorf("issuer %s: issuer_url: %w", iss.Name(), err)
			}
			st.certPath = pu.Path
		}
		p.issuers = append(p.issuers, st)
	}
	for path, name := range files {
		f, err := loadFile(name)
		if err != nil {
			return nil, fmt.Errorf("pki file %s: %w", path, err)
		}
		p.files[path] = f
	}
	return p, nil
}

// Revoked tells the publisher an issuer's certificate was revoked on this node,
// so that the CRL is regenerated at once rather than at the next check.
func (p *Publisher) Revoked(issuer string) {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run keeps the CRLs fresh until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.CRLCheckInterval)
	defer t.Stop()
	p.refreshCRLs(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
		p.refreshCRLs(ctx)
		p.evictOCSP()
	}
}

// refreshCRLs regenerates each stale CRL whose lease this node gets.
func (p *Publisher) refreshCRLs(ctx context.Context) {
	for _, st := range p.issuers {
		if err := p.refreshCRL(ctx, st); err != nil {
			p.log.Error("CRL", "issuer", st.iss.Name(), "error", err)
		}
	}
}

// refreshCRL makes again each of the issuer's shard CRLs that is stale (too
// old, or asked for by an operator) or whose revocations changed since this
// node made it, under the issuer's lease.
func (p *Publisher) refreshCRL(ctx context.Context, st *issuerState) error {
	now := p.cfg.Now().UTC()
	name := st.iss.Name()
	byShard, err := p.store.RevocationsByShard(ctx, name)
	if err != nil {
		return err
	}
	heads, err := p.store.CRLHeads(ctx, name)
	if err != nil {
		return err
	}
	current := map[int]*storage.CRL{}
	for i := range heads {
		current[heads[i].Shard] = &heads[i]
	}
	revs := map[int]storage.ShardRevocations{}
	for _, r := range byShard {
		revs[r.Shard] = r
	}
	requested := p.requestedAt(ctx, st)
	var todo []int
	st.mu.Lock()
	for _, shard := range publishedShards(st.iss.URLs().Shards(), heads, byShard) {
		r, last := revs[shard], st.shards[shard]
		_, madeIt := st.shards[shard]
		changed := !st.made || !madeIt || r.Count != last.count || !r.Latest.Equal(last.latest)
		cur := current[shard]
		stale := cur == nil || now.Sub(cur.ThisUpdate) >= p.cfg.CRLRegenerate || requested.After(cur.ThisUpdate)
		if stale || changed {
			todo = append(todo, shard)
		}
	}
	made := st.made
	st.mu.Unlock()
	if len(todo) == 0 {
		if made {
			// Renew the lease so that this node stays the one that publishes.
			p.store.TryLease(ctx, "crl/"+name, p.cfg.Holder, now, p.leaseTTL())
		}
		return nil
	}
	// Only the holder of the issuer's lease makes its CRLs; it keeps the lease
	// by renewing it at every check, so another node takes over only when the
	// holder stops, and then makes every CRL at once (it has made none yet).
	ok, err := p.store.TryLease(ctx, "crl/"+name, p.cfg.Holder, now, p.leaseTTL())
	if err != nil || !ok {
		return err
	}
	for _, shard := range todo {
		if err := p.makeCRL(ctx, st, shard, current[shard], revs[shard], now); err != nil {
			return fmt.Errorf("shard %d: %w", shard, err)
		}
	}
	st.mu.Lock()
	st.made = true
	st.mu.Unlock()
	return nil
}

// publishedShards lists the shards whose CRLs are published: every shard new
// certificates go to (0..n-1), and every shard published before or holding a
// revoked certificate, so that lowering crl_shards leaves the certificates
// already in the higher shards with a current CRL at the URL they carry.
func publishedShards(n int, heads []storage.CRL, revs []storage.ShardRevocations) []int {
	set := map[int]bool{}
	for i := 0; i < n; i++ {
		set[i] = true
	}
	for _, h := range heads {
		set[h.Shard] = true
	}
	for _, r := range revs {
		set[r.Shard] = true
	}
	var out []int
	for s := range set {
		if s >= 0 && s < issuance.MaxCRLShards {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// makeCRL signs and stores one shard's CRL.
func (p *Publisher) makeCRL(ctx context.Context, st *issuerState, shard int, current *storage.CRL, rev storage.ShardRevocations, now time.Time) error {
	name := st.iss.Name()
	revoked, err := p.store.ListRevokedShard(ctx, name, shard, now)
	if err != nil {
		return err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return fmt.Errorf("serial %q is not hex", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	// CRL numbers are the thisUpdate in microseconds: monotonic across nodes
	// without a counter, as long as only the lease holder makes them.
	thisUpdate := now.Truncate(time.Second)
	number := big.NewInt(now.UnixMicro())
	if current != nil && number.Int64() <= current.Number {
		number = big.NewInt(current.Number + 1)
	}
	signed, err := st.iss.SignShardCRL(ctx, shard, number, thisUpdate, thisUpdate.Add(p.cfg.CRLValidity), entries)
	if err != nil {
		return err
	}
	p.metrics.CRLsPublished.Add(1)
	if err := p.store.PutCRL(ctx, &storage.CRL{Issuer: name, Shard: shard, Number: number.Int64(),
		ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(p.cfg.CRLValidity), DER: signed.DER}); err != nil {
		if isConflict(err) {
			return nil // another node published a newer one meanwhile
		}
		return err
	}
	st.mu.Lock()
	st.shards[shard] = shardState{count: rev.Count, latest: rev.Latest}
	st.mu.Unlock()
	st.crlCache[shard].invalidate()
	st.listCache.invalidate()
	url := st.iss.URLs().CRLShardURL(shard)
	p.log.Info("CRL published", "audit", "crl", "issuer", name, "shard", shard, "url", url, "number", number.String(), "revoked", len(entries), "next_update", thisUpdate.Add(p.cfg.CRLValidity))
	data := map[string]any{
		"issuer": name, "number": number.String(), "entries": len(entries),
		"this_update": thisUpdate.UTC(), "next_update": thisUpdate.Add(p.cfg.CRLValidity).UTC(),
	}
	if st.iss.URLs().Shards() > 1 || shard > 0 {
		data["shard"], data["url"] = shard, url
	}
	return p.cfg.Audit.Record(ctx, audit.Event{Type: audit.CRLPublished, Data: data})
}

// requestedAt is when an operator last asked (`anvil admin crl regenerate`)
// for new CRLs of the issuer (zero if never): every shard's CRL older than
// that is made again. The request is a row in the database, not a call to
// this process: whichever node holds the issuer's lease serves it at its next
// check, signing in the HSM it already has open, under the same lease and CRL
// numbering as any other CRL.
func (p *Publisher) requestedAt(ctx context.Context, st *issuerState) time.Time {
	a, ok := p.store.(CRLRequests)
	if !ok {
		return time.Time{}
	}
	at, err := a.CRLRequested(ctx, st.iss.Name())
	if err != nil {
		p.log.Error("CRL request", "issuer", st.iss.Name(), "error", err)
		return time.Time{}
	}
	return at
}

// Metrics returns the publisher's counters.
func (p *Publisher) Metrics() *Metrics { return &p.metrics }

// leaseTTL is how long the CRL lease lasts between renewals: a check interval
// and a margin, so that if the holder dies another node takes over within two
// intervals or so, inside the publication bound.
func (p *Publisher) leaseTTL() time.Duration {
	return p.cfg.CRLCheckInterval + p.cfg.CRLCheckInterval/2 + 2*time.Second
}
