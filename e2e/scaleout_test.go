package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
)

// cluster is a scaled-out Anvil: one PostgreSQL, one `anvil signer` with the
// HSM, and front ends running `anvil serve` against both.
type cluster struct {
	t        testing.TB
	dir      string
	dsn      string
	webRoots *x509.CertPool // trusts the front ends' TLS certificates
	tlsCA    *softCA
	dns      *DNSServer
	chal     *challengeHTTP
	httpPort int
	base     string // the base URL every front end claims (that of the first)
	signer   *proc
	fronts   []*proc
	ports    []int
	// admin ports (/metrics) of the signer and of each front end
	signerAdmin int
	frontAdmin  []int
}

// proc is a child process with its log.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// softCA is a software CA for the TLS between processes and clients (not the
// HSM CA: these certificates only authenticate the test's processes).
type softCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newSoftCA(t testing.TB, dir string) *softCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e process CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	ca := &softCA{cert: cert, key: key, file: filepath.Join(dir, "process-ca.pem")}
	os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return ca
}

// leaf writes name.pem/name.key for a certificate usable as server and client.
func (c *softCA) leaf(t testing.TB, dir, name string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

var signerTemplate = template.Must(template.New("signer").Parse(`
listen: 127.0.0.1:{{.Port}}
tls:
  cert: signer.pem
  key: signer.key
  client_ca: process-ca.pem
allowed_clients: [frontend-1, frontend-2]
admin_listen: 127.0.0.1:{{.AdminPort}}
database:
  driver: postgres
  dsn_env: ANVIL_TEST_DSN
pki:
  listen: 127.0.0.1:{{.PKIPort}}
` + issuanceYAML + `policy:
  allowed_suffixes: [anvil-e2e.com]
log:
  level: info
`))

var frontTemplate = template.Must(template.New("front").Parse(`
listen: 127.0.0.1:{{.Port}}
base_url: {{.Base}}
admin_listen: 127.0.0.1:{{.AdminPort}}
tls:
  cert: {{.Name}}.pem
  key: {{.Name}}.key
database:
  driver: postgres
  dsn_env: ANVIL_TEST_DSN
policy:
  allowed_suffixes: [anvil-e2e.com]
signer:
  url: https://127.0.0.1:{{.SignerPort}}
  cert: {{.Name}}.pem
  key: {{.Name}}.key
  ca: process-ca.pem
acme:
  inline_validation: 5s
  retry_backoff: 200ms
  validation_lease: 3s
validation:
  resolvers: ["{{.DNS}}"]
  http_port: {{.HTTPPort}}
  allow_private_targets: true
  disable_caa: true
  timeout: 10s
nonce:
  key_file: nonce.key
log:
  level: info
`))

// newCluster starts PostgreSQL (from pgtest), the signer, and n front ends.
func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	dir := t.TempDir()
	if err := copyDevHierarchy(dir); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, dsn: pgtest.Start(t), dns: StartDNS(t), httpPort: freePort(t)}
	c.tlsCA = newSoftCA(t, dir)
	c.webRoots = x509.NewCertPool()
	c.webRoots.AddCert(c.tlsCA.cert)
	c.tlsCA.leaf(t, dir, "signer")
	signerPort := freePort(t)
	c.signerAdmin = freePort(t)
	c.write("signer.yaml", signerTemplate, map[string]any{"Port": signerPort, "PKIPort": freePort(t), "AdminPort": c.signerAdmin})
	c.signer = c.start("signer", "signer", "signer.yaml")
	waitTCP(t, signerPort, c.signer)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("frontend-%d", i)
		c.tlsCA.leaf(t, dir, name)
		port := freePort(t)
		c.ports = append(c.ports, port)
		c.frontAdmin = append(c.frontAdmin, freePort(t))
		if c.base == "" {
			c.base = fmt.Sprintf("https://localhost:%d", port)
		}
		c.write(name+".yaml", frontTemplate, map[string]any{"Port": port, "Base": c.base, "Name": name,
			"SignerPort": signerPort, "DNS": c.dns.Addr, "HTTPPort": c.httpPort, "AdminPort": c.frontAdmin[i-1]})
		f := c.start(name, "serve", name+".yaml")
		c.fronts = append(c.fronts, f)
		c.waitFront(i - 1)
	}
	c.chal = startChallengeServer(t, c.httpPort)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(c.fronts, c.signer) {
				b, _ := os.ReadFile(p.log)
				t.Logf("%s log:\n%s", p.name, tail(string(b), 60))
			}
		}
	})
	return c
}

func (c *cluster) write(name string, tmpl *template.Template, data map[string]any) {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, name), b.Bytes(), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) start(name string, args ...string) *proc {
	p := &proc{name: name, log: filepath.Join(c.dir, name+".log"), done: make(chan struct{})}
	logf, _ := os.Create(p.log)
	p.cmd = exec.Command(anvilBin, append([]string{args[0], "--config"}, args[1:]...)...)
	p.cmd.Dir = c.dir
	p.cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(c.dir, "var/dev/softhsm/softhsm2.conf"), "ANVIL_TEST_DSN="+c.dsn)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Killed with the test binary, should it die without cleaning up.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	// Stopped with the test even when it fails before the cluster is up.
	c.t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func waitTCP(t testing.TB, port int, p *proc) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited at start:\n%s", p.name, tail(string(b), 40))
		default:
		}
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %d", p.name, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) waitFront(i int) {
	client := c.pinnedClient(i)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-c.fronts[i].done:
			b, _ := os.ReadFile(c.fronts[i].log)
			c.t.Fatalf("%s exited at start:\n%s", c.fronts[i].name, tail(string(b), 40))
		default:
		}
		resp, err := client.Get(c.base + "/directory")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("front end %d did not serve: %v", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pinnedClient talks to front end i only, whatever host the URL names.
func (c *cluster) pinnedClient(i int) *http.Client {
	addr := fmt.Sprintf("127.0.0.1:%d", c.ports[i])
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.webRoots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// spreadClient sends every request to a front end chosen at random, as a
// load balancer would: one keep-alive transport per front end, and each
// request handed to a random one. A front end that refuses the connection is
// skipped; an error after the request went out is the client's to see.
func (c *cluster) spreadClient() *http.Client {
	st := &spreadTransport{}
	for _, port := range c.ports {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		st.fronts = append(st.fronts, &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: c.webRoots},
			MaxIdleConnsPerHost: 16,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			},
		})
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: st}
}

type spreadTransport struct{ fronts []*http.Transport }

func (s *spreadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var last error
	for _, i := range mrand.Perm(len(s.fronts)) {
		if last != nil && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		resp, err := s.fronts[i].RoundTrip(req)
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			last = err // nothing was sent: try another front end
			continue
		}
		return resp, err
	}
	return nil, last
}

// legoSpread is a registered lego client whose requests are spread.
func (c *cluster) legoSpread(t testing.TB) *lego.Client {
	user := &legoUser{key: newKey(t)}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = c.base + "/directory"
	cfg.HTTPClient = c.spreadClient()
	cfg.Certificate.OverallRequestLimit = 1000
	client, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.Challenge.SetHTTP01Provider(c.chal)
	register(t, client, user)
	return client
}

func startChallengeServer(t testing.TB, port int) *challengeHTTP {
	s := &challengeHTTP{keys: map[string]string{}}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Two front ends, one signer, one PostgreSQL: lego clients spread every
// request across both front ends, and every issuance succeeds; a nonce from
// one front end is good once at the other.
func TestScaleOutTwoFrontEnds(t *testing.T) {
	c := newCluster(t, 2)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := c.legoSpread(t)
			for i := 0; i < 5; i++ {
				name := fmt.Sprintf("w%d-%d.scale.anvil-e2e.com", w, i)
				res, err := client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
				if err != nil {
					t.Errorf("obtain %s: %v", name, err)
					failed.Add(1)
					continue
				}
				verifyBundle(t, &CA{Roots: devRootPool(t, c.dir)}, res.Certificate, name)
			}
		}(w)
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d issuances failed", failed.Load())
	}
	// Both front ends did the work.
	for _, f := range c.fronts {
		b, _ := os.ReadFile(f.log)
		if !bytes.Contains(b, []byte("order finalized")) {
			t.Errorf("%s finalized no order: the requests were not spread", f.name)
		}
	}

	// A nonce from front end 1 is accepted once by front end 2.
	rc := newRawClientAt(t, c, c.pinnedClient(1))
	nonce := nonceFrom(t, c.pinnedClient(0), c.base)
	h := map[string]any{"alg": "ES256", "nonce": nonce, "url": c.base + "/acme/new-account", "jwk": rc.jwk()}
	payload := []byte(`{"termsOfServiceAgreed":true}`)
	st, body, _ := rc.send(c.base+"/acme/new-account", rc.jws(h, payload))
	if st != http.StatusCreated {
		t.Fatalf("nonce from front end 1 at front end 2: %d %s", st, body)
	}
	for i := 0; i < 2; i++ {
		rc.http = c.pinnedClient(i)
		st, body, hdr := rc.send(c.base+"/acme/new-account", rc.jws(h, payload))
		expectProblem(t, st, body, hdr, http.StatusBadRequest, "badNonce")
	}
}

func devRootPool(t testing.TB, dir string) *x509.CertPool {
	pool := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(dir, "var/dev/pki/root.pem"))
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("dev root: %v", err)
	}
	return pool
}

func nonceFrom(t testing.TB, client *http.Client, base string) string {
	req, _ := http.NewRequest(http.MethodHead, base+"/acme/new-nonce", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Replay-Nonce")
}

// newRawClientAt is a raw client of a cluster, over the given HTTP client.
func newRawClientAt(t *testing.T, c *cluster, h *http.Client) *rawClient {
	rc := &rawClient{t: t, http: h, key: newKey(t)}
	rc.dir = map[string]any{"newNonce": c.base + "/acme/new-nonce", "newAccount": c.base + "/acme/new-account", "newOrder": c.base + "/acme/new-order"}
	return rc
}

// A front end killed in the middle of a load run: the other keeps serving; no
// order is left in processing, no certificate is lost, and no serial or order
// has two certificates, as the database shows.
func TestScaleOutFrontEndKilledMidRun(t *testing.T) {
	c := newCluster(t, 2)
	var done, retried atomic.Int32
	var wg sync.WaitGroup
	const workers, perWorker = 4, 12
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := c.legoSpread(t)
			for i := 0; i < perWorker; i++ {
				name := fmt.Sprintf("k%d-%d.kill.anvil-e2e.com", w, i)
				// A flow cut by the dying front end fails; the client tries
				// again, as any ACME client would, and the survivor serves it.
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					_, err = client.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
					if err == nil {
						break
					}
					retried.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					t.Errorf("obtain %s: %v", name, err)
					continue
				}
				if done.Add(1) == workers*perWorker/3 {
					c.fronts[1].kill()
				}
			}
		}(w)
	}
	wg.Wait()
	if n := done.Load(); n != workers*perWorker {
		t.Fatalf("%d of %d issuances succeeded", n, workers*perWorker)
	}
	select {
	case <-c.fronts[1].done:
	default:
		t.Fatal("front end 2 was never killed")
	}
	t.Logf("%d flows retried after the kill", retried.Load())

	// The survivor takes over what the dead one left in processing: wait for
	// its validation lease (3 s) to pass and its sweeper to claim the rest.
	conn, err := pgx.Connect(context.Background(), c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	query := func(q string) int {
		var n int
		if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		orders := query(`SELECT count(*) FROM orders WHERE status = 'processing'`)
		chals := query(`SELECT count(*) FROM challenges WHERE status = 'processing'`)
		if orders == 0 && chals == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, %d orders and %d challenges are still processing", orders, chals)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := query(`SELECT count(*) FROM (SELECT order_id FROM certificates WHERE der IS NOT NULL GROUP BY order_id HAVING count(*) > 1) d`); n != 0 {
		t.Fatalf("%d orders have more than one certificate", n)
	}
	if n := query(`SELECT count(*) - count(DISTINCT serial) FROM certificates`); n != 0 {
		t.Fatalf("%d duplicated serials", n)
	}
	if n := query(`SELECT count(*) FROM orders o WHERE status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = o.cert_serial AND c.der IS NOT NULL)`); n != 0 {
		t.Fatalf("%d valid orders whose certificate is not in the ledger", n)
	}
	valid := query(`SELECT count(*) FROM orders WHERE status = 'valid'`)
	if valid < workers*perWorker {
		t.Fatalf("%d valid orders, want at least %d", valid, workers*perWorker)
	}
	t.Logf("database: %d valid orders, every one with exactly one certificate; nothing left processing", valid)
}
