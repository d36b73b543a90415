package revocation

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anvil-pki/anvil/issuance"
)

// file is a static file served as DER.
type file struct {
	der         []byte
	contentType string
}

// loadFile reads a certificate or CRL, PEM or DER, for serving as DER.
func loadFile(name string) (file, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return file{}, err
	}
	f := file{der: b, contentType: "application/pkix-cert"}
	if block, _ := pem.Decode(b); block != nil {
		f.der = block.Bytes
		if block.Type == "X509 CRL" {
			f.contentType = "application/pkix-crl"
		}
	} else if strings.HasSuffix(name, ".crl") {
		f.contentType = "application/pkix-crl"
	}
	return f, nil
}

// cachedCRL keeps the stored CRL a few seconds, so that a burst of CRL
// downloads is a burst of memory reads.
type cachedCRL struct {
	mu      sync.Mutex
	der     []byte
	thisUpd time.Time
	nextUpd time.Time
	fetched time.Time
}

func (c *cachedCRL) invalidate() {
	c.mu.Lock()
	c.fetched = time.Time{}
	c.mu.Unlock()
}

const crlCacheTTL = 5 * time.Second

// Handler serves CRLs and issuer certificates at the paths of the URLs the
// certificates carry, the static files, and OCSP at ocspPath (GET below it,
// POST to it).
func (p *Publisher) Handler(ocspPath string) http.Handler {
	mux := http.NewServeMux()
	for _, st := range p.issuers {
		st := st
		if st.crlPath != "" {
			mux.HandleFunc("GET "+st.crlPath, func(w http.ResponseWriter, r *http.Request) { p.serveCRL(w, r, st, 0) })
			mux.HandleFunc("GET "+st.shardDir+"{file}", func(w http.ResponseWriter, r *http.Request) { p.serveShardDir(w, r, st) })
		}
		if st.certPath != "" {
			der := st.iss.Certificate().Raw
			mux.HandleFunc("GET "+st.certPath, func(w http.ResponseWriter, r *http.Request) {
				serveDER(w, der, "application/pkix-cert", "public, max-age=86400")
			})
		}
	}
	for path, f := range p.files {
		f := f
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			serveDER(w, f.der, f.contentType, "public, max-age=3600")
		})
	}
	if ocspPath == "" {
		return mux
	}
	// OCSP requests bypass the mux: a GET's base64 may hold "//", which the
	// mux would "clean" with a redirect, breaking the request.
	prefix := strings.TrimSuffix(ocspPath, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path := r.URL.EscapedPath(); path == prefix || strings.HasPrefix(path, prefix+"/") {
			p.ServeOCSP(w, r, prefix)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func serveDER(w http.ResponseWriter, der []byte, contentType, cacheControl string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", cacheControl)
	w.Header().Set("Content-Length", strconv.Itoa(len(der)))
	w.Write(der)
}

func (p *Publisher) serveCRL(w http.ResponseWriter, r *http.Request, st *issuerState, shard int) {
	c := &st.crlCache[shard]
	c.mu.Lock()
	if time.Since(c.fetched) > crlCacheTTL {
		crl, err := p.store.GetCRLShard(r.Context(), st.iss.Name(), shard)
		switch {
		case isNotFound(err):
			// Remembered too, so that asking for shards that do not exist
			// costs one read per shard per cache period.
			c.der, c.fetched = nil, time.Now()
		case err != nil:
			c.mu.Unlock()
			p.log.Error("serving CRL", "issuer", st.iss.Name(), "shard", shard, "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		default:
			c.der, c.thisUpd, c.nextUpd, c.fetched = crl.DER, crl.ThisUpdate, crl.NextUpdate, time.Now()
		}
	}
	der, thisUpd, nextUpd := c.der, c.thisUpd, c.nextUpd
	c.mu.Unlock()
	if der == nil {
		if shard < st.iss.URLs().Shards() {
			http.Error(w, "no CRL published yet", http.StatusServiceUnavailable)
		} else {
			http.NotFound(w, r)
		}
		return
	}
	w.Header().Set("Last-Modified", thisUpd.UTC().Format(http.TimeFormat))
	w.Header().Set("Expires", nextUpd.UTC().Format(http.TimeFormat))
	// A CRL changes soon after a revocation: let caches keep it a minute.
	serveDER(w, der, "application/pkix-crl", "public, max-age=60")
}

// serveShardDir serves what lies below an issuer's shard directory: the CRL
// of shard k at "k.crl" (k > 0, written as CRLShardURL writes it, so that one
// CRL has one URL), and the list of CRL URLs at "crls.json". Anything else,
// and shards beyond MaxCRLShards, is not found: a stranger's request costs at
// most one small read per shard per cache period.
func (p *Publisher) serveShardDir(w http.ResponseWriter, r *http.Request, st *issuerState) {
	file := r.PathValue("file")
	if file == "crls.json" {
		p.serveCRLList(w, r, st)
		return
	}
	num, ok := strings.CutSuffix(file, ".crl")
	shard, err := strconv.Atoi(num)
	if !ok || err != nil || shard < 1 || shard >= issuance.MaxCRLShards || strconv.Itoa(shard) != num {
		http.NotFound(w, r)
		return
	}
	p.serveCRL(w, r, st, shard)
}

// cachedList keeps an issuer's JSON list of CRL URLs a few seconds.
type cachedList struct {
	mu      sync.Mutex
	body    []byte
	fetched time.Time
}

func (c *cachedList) invalidate() {
	c.mu.Lock()
	c.fetched = time.Time{}
	c.mu.Unlock()
}

// CRLURLs lists the URLs of an issuer's CRLs: the shards new certificates go
// to, and any other shard whose CRL is stored (see publishedShards).
func (p *Publisher) CRLURLs(ctx context.Context, issuer string) ([]string, error) {
	for _, st := range p.issuers {
		if st.iss.Name() == issuer {
			return p.crlURLs(ctx, st)
		}
	}
	return nil, fmt.Errorf("no issuer %q", issuer)
}

func (p *Publisher) crlURLs(ctx context.Context, st *issuerState) ([]string, error) {
	heads, err := p.store.CRLHeads(ctx, st.iss.Name())
	if err != nil {
		return nil, err
	}
	urls := []string{}
	for _, shard := range publishedShards(st.iss.URLs().Shards(), heads, nil) {
		urls = append(urls, st.iss.URLs().CRLShardURL(shard))
	}
	return urls, nil
}

// serveCRLList serves the issuer's CRL URLs as a JSON array of strings: the
// form the CCADB asks of CAs that partition their CRLs ("JSON Array of
// Partitioned CRLs"), so that the list can be given to it, and to anyone
// else who wants every CRL, at one stable URL.
func (p *Publisher) serveCRLList(w http.ResponseWriter, r *http.Request, st *issuerState) {
	c := &st.listCache
	c.mu.Lock()
	if time.Since(c.fetched) > crlCacheTTL {
		urls, err := p.crlURLs(r.Context(), st)
		if err != nil {
			c.mu.Unlock()
			p.log.Error("serving the CRL list", "issuer", st.iss.Name(), "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		body, err := json.Marshal(urls)
		if err != nil {
			c.mu.Unlock()
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		c.body, c.fetched = append(body, '\n'), time.Now()
	}
	body := c.body
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// RefreshNow makes the CRLs of every issuer current before returning: for
// start-up and tests.
func (p *Publisher) RefreshNow(ctx context.Context) { p.refreshCRLs(ctx) }
