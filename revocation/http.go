package revocation

import (
	"context"
	"encoding/pem"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
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
			mux.HandleFunc("GET "+st.crlPath, func(w http.ResponseWriter, r *http.Request) { p.serveCRL(w, r, st) })
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

func (p *Publisher) serveCRL(w http.ResponseWriter, r *http.Request, st *issuerState) {
	c := &st.crlCache
	c.mu.Lock()
	if time.Since(c.fetched) > crlCacheTTL {
		crl, err := p.store.GetCRL(r.Context(), st.iss.Name())
		if err != nil {
			c.mu.Unlock()
			if isNotFound(err) {
				http.Error(w, "no CRL published yet", http.StatusServiceUnavailable)
				return
			}
			p.log.Error("serving CRL", "issuer", st.iss.Name(), "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		c.der, c.thisUpd, c.nextUpd, c.fetched = crl.DER, crl.ThisUpdate, crl.NextUpdate, time.Now()
	}
	der, thisUpd, nextUpd := c.der, c.thisUpd, c.nextUpd
	c.mu.Unlock()
	w.Header().Set("Last-Modified", thisUpd.UTC().Format(http.TimeFormat))
	w.Header().Set("Expires", nextUpd.UTC().Format(http.TimeFormat))
	// A CRL changes soon after a revocation: let caches keep it a minute.
	serveDER(w, der, "application/pkix-crl", "public, max-age=60")
}

// RefreshNow makes the CRLs of every issuer current before returning: for
// start-up and tests.
func (p *Publisher) RefreshNow(ctx context.Context) { p.refreshCRLs(ctx) }
