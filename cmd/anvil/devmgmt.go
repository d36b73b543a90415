package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// newManagementHandler serves the dev hierarchy's certificates the way
// Pebble's management interface does, so that a pipeline fetches its trust
// anchor with curl: /roots/N and /intermediates/N are the root and the
// intermediates (PEM, leaf side first) of chain N, 0 being the chain the
// server sends by default (int-ecdsa under Root X1) and 1 the alternate one
// (int-ecdsa, X1 cross-signed by X2, under Root X2); /ca-bundle.pem holds
// every root. Pebble's /root-keys and /intermediate-keys have no
// counterpart: the keys stay in the token. Everything else (CRLs, OCSP, the
// CA certificates as DER at the URLs certificates carry) goes to rest.
func newManagementHandler(dir string, rsa bool, rest http.Handler) (http.Handler, error) {
	read := func(names ...string) ([]byte, error) {
		var b bytes.Buffer
		for _, n := range names {
			c, err := os.ReadFile(filepath.Join(dir, "pki", n))
			if err != nil {
				return nil, fmt.Errorf("management interface: %w", err)
			}
			b.Write(bytes.TrimSpace(c))
			b.WriteByte('\n')
		}
		return b.Bytes(), nil
	}
	var roots, inters [][]byte
	for _, chain := range []struct {
		root  string
		inter []string
	}{
		{"root.pem", []string{"int-ecdsa.pem"}},
		{"root-x2.pem", []string{"int-ecdsa.pem", "root-x1-by-x2.pem"}},
	} {
		r, err := read(chain.root)
		if err != nil {
			return nil, err
		}
		i, err := read(chain.inter...)
		if err != nil {
			return nil, err
		}
		roots, inters = append(roots, r), append(inters, i)
	}
	bundle := bytes.Join(roots, nil)
	var rsaInter []byte
	if rsa {
		var err error
		if rsaInter, err = read("int-rsa.pem"); err != nil {
			return nil, err
		}
	}
	pem := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/pem-certificate-chain")
			w.Write(b)
		}
	}
	indexed := func(list [][]byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n, err := strconv.Atoi(r.PathValue("n"))
			if err != nil || n < 0 || n >= len(list) {
				http.Error(w, fmt.Sprintf("no chain %q: chains 0 to %d", r.PathValue("n"), len(list)-1), http.StatusNotFound)
				return
			}
			pem(list[n])(w, r)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /roots/{n}", indexed(roots))
	mux.HandleFunc("GET /intermediates/{n}", indexed(inters))
	mux.HandleFunc("GET /ca-bundle.pem", pem(bundle))
	if rsa {
		mux.HandleFunc("GET /intermediates/rsa", pem(rsaInter))
	}
	noKeys := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Anvil's CA keys stay inside the HSM token: there is nothing to download", http.StatusNotFound)
	}
	mux.HandleFunc("/root-keys/", noKeys)
	mux.HandleFunc("/intermediate-keys/", noKeys)
	if rest != nil {
		mux.Handle("/", rest)
	}
	return mux, nil
}
