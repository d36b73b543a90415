// Package e2e runs real ACME clients against a real `anvil serve`: the binary
// built from this tree, on SoftHSM2 tokens and a dev hierarchy made by the same
// script as `make run`, with SQLite, on loopback. The DNS server validation asks
// is one the test runs, so that names resolve to 127.0.0.1.
package e2e

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
)

var anvilBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "anvil-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	anvilBin = filepath.Join(dir, "anvil")
	args := []string{"build", "-o", anvilBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/anvil")...)
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building anvil: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Main(m) // runs the tests, then stops the PostgreSQL cluster if one was started
	os.RemoveAll(dir)
	if devDir != "" {
		os.RemoveAll(devDir)
	}
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var (
	devOnce sync.Once
	devDir  string // a directory `scripts/run-dev.sh --init-only` prepared once
	devErr  error
)

// copyDevHierarchy gives dir what `make run` leaves before it serves: the
// symlinked configs and scripts, and a copy of var/dev (SoftHSM2 tokens, dev
// hierarchy, transcripts). The script itself runs once per test binary; each
// CA gets its own copy of its results, with softhsm2.conf pointing at the copy.
func copyDevHierarchy(dir string) error {
	devOnce.Do(func() {
		devDir, devErr = os.MkdirTemp("", "anvil-e2e-dev-")
		if devErr != nil {
			return
		}
		if devErr = linkRepo(devDir); devErr != nil {
			return
		}
		initCmd := exec.Command(filepath.Join(devDir, "scripts", "run-dev.sh"), "--init-only")
		initCmd.Dir = devDir
		initCmd.Env = append(os.Environ(), "ANVIL_BIN="+anvilBin)
		if out, err := initCmd.CombinedOutput(); err != nil {
			devErr = fmt.Errorf("scripts/run-dev.sh --init-only: %v\n%s", err, out)
		}
	})
	if devErr != nil {
		return devErr
	}
	if err := linkRepo(dir); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(devDir, "var"), filepath.Join(dir, "var")).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the dev hierarchy: %v: %s", err, out)
	}
	conf := filepath.Join(dir, "var/dev/softhsm/softhsm2.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	return os.WriteFile(conf, bytes.ReplaceAll(b, []byte(devDir), []byte(dir)), 0o600)
}

func linkRepo(dir string) error {
	root := repoRoot()
	for _, d := range []string{"configs", "scripts", "softhsm-test"} {
		if err := os.Symlink(filepath.Join(root, d), filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	return nil
}

// CA is a running `anvil serve` and everything around it.
type CA struct {
	t         testing.TB
	Dir       string // working directory, with var/dev as `make run` leaves it
	BaseURL   string
	DirURL    string
	Roots     *x509.CertPool
	RootPEM   string // path of the dev root
	HTTPPort  int    // where validation looks for http-01
	TLSPort   int    // where validation looks for tls-alpn-01
	AdminPort int    // /metrics, /health, /debug/pprof
	PKIPort   int    // CRLs, OCSP and CA certificates over plain HTTP
	DNS       *DNSServer
	opts      caOptions
	cfgPath   string
	logPath   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives the server's exit when it ends
}

type caOptions struct {
	extraYAML string // appended to serve.yaml (extra top-level sections)
	acmeYAML  string // appended inside the acme section
	logLevel  string
	database  string   // the database: section's body; SQLite under var/dev by default
	hsmModule string   // hsm.module instead of SoftHSM2 (e.g. the fault module)
	hsmYAML   string   // added inside the hsm section
	env       []string // added to the server's environment
}

func levelOr(l string) string {
	if l == "" {
		return "info"
	}
	return l
}

// CAOption changes the server configuration.
type CAOption func(*caOptions)

// WithDatabase replaces the body of the database: section of serve.yaml.
func WithDatabase(yaml string) CAOption { return func(o *caOptions) { o.database = yaml } }

// WithACME adds lines to the acme: section of serve.yaml.
func WithACME(yaml string) CAOption { return func(o *caOptions) { o.acmeYAML += yaml } }

// WithHSM loads module instead of SoftHSM2 (empty: SoftHSM2), adds yaml inside
// the hsm: section, and env to the server's environment.
func WithHSM(module, yaml string, env ...string) CAOption {
	return func(o *caOptions) { o.hsmModule, o.hsmYAML, o.env = module, yaml, append(o.env, env...) }
}

// NewCA builds the dev hierarchy with scripts/run-dev.sh --init-only in a fresh
// directory and starts `anvil serve` on free loopback ports.
func NewCA(t testing.TB, opts ...CAOption) *CA {
	t.Helper()
	dir := t.TempDir()
	if err := copyDevHierarchy(dir); err != nil {
		t.Fatal(err)
	}
	ca := &CA{t: t, Dir: dir, RootPEM: filepath.Join(dir, "var/dev/pki/root.pem"), DNS: StartDNS(t)}
	for _, o := range opts {
		o(&ca.opts)
	}
	ca.Roots = x509.NewCertPool()
	pemBytes, err := os.ReadFile(ca.RootPEM)
	if err != nil || !ca.Roots.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("dev root: %v", err)
	}
	port := freePort(t)
	ca.HTTPPort, ca.TLSPort, ca.AdminPort, ca.PKIPort = freePort(t), freePort(t), freePort(t), freePort(t)
	ca.BaseURL = fmt.Sprintf("https://localhost:%d", port)
	ca.DirURL = ca.BaseURL + "/directory"
	ca.cfgPath = filepath.Join(dir, "serve.yaml")
	ca.logPath = filepath.Join(dir, "serve.log")
	ca.writeConfig(port)
	ca.Start()
	t.Cleanup(func() {
		ca.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(ca.logPath); err == nil {
				t.Logf("anvil serve log:\n%s", tail(string(b), 200))
			}
		}
	})
	return ca
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// issuanceYAML is the HSM, issuers and profiles of the dev hierarchy, as
// `anvil serve` and `anvil signer` both take them; {{.PKIPort}} serves the
// CRLs and OCSP their certificates point to.
const issuanceYAML = `hsm:
  module: /usr/lib/softhsm/libsofthsm2.so
  pin:
    file: var/dev/softhsm/anvil-dev-online.pin
  max_sessions: 4
issuers:
  - name: int-ecdsa
    certificate: var/dev/pki/int-ecdsa.pem
    key: "pkcs11:token=anvil-dev-online;object=int-ecdsa;id=%11"
    issuer_url: http://localhost:{{.PKIPort}}/pki/int-ecdsa.der
    crl_url: http://localhost:{{.PKIPort}}/pki/int-ecdsa.crl
    ocsp_url: http://localhost:{{.PKIPort}}/ocsp
    # For clients that trust Root X2 only: through X1 cross-signed by X2.
    alternate_chains:
      - [var/dev/pki/int-ecdsa.pem, var/dev/pki/root-x1-by-x2.pem]
  - name: int-rsa
    certificate: var/dev/pki/int-rsa.pem
    key: "pkcs11:token=anvil-dev-online;object=int-rsa;id=%12"
    issuer_url: http://localhost:{{.PKIPort}}/pki/int-rsa.der
    crl_url: http://localhost:{{.PKIPort}}/pki/int-rsa.crl
    ocsp_url: http://localhost:{{.PKIPort}}/ocsp
default_profile: default
profiles:
  default:
    description: 90-day TLS server certificate
    ignored_lints: [e_dnsname_not_valid_tld, e_ext_san_contains_reserved_ip]
  shortlived:
    description: 7-day TLS certificate
    validity: 7d
    ignored_lints: [e_dnsname_not_valid_tld, e_ext_san_contains_reserved_ip]
  server:
    validity: 30d
    ignored_lints: [e_dnsname_not_valid_tld, e_ext_san_contains_reserved_ip]
`

var serveTemplate = template.Must(template.New("serve").Parse(`
listen: 127.0.0.1:{{.Port}}
base_url: https://localhost:{{.Port}}
admin_listen: 127.0.0.1:{{.AdminPort}}
tls:
  cert: var/dev/pki/server.pem
  key: var/dev/pki/server.key
  issue_for: [localhost, 127.0.0.1]
  profile: server
database:
{{.Database}}
` + issuanceYAML + `acme:
  caa_identities: [anvil.localhost]
  inline_validation: 5s
  retry_backoff: 200ms
{{.ACME}}
policy:
  allow_single_label: true
  allow_special_use: [localhost]
  allowed_ip_ranges: [127.0.0.0/8, "::1/128"]
validation:
  resolvers: ["{{.DNS}}"]
  http_port: {{.HTTPPort}}
  tls_port: {{.TLSPort}}
  allow_private_targets: true
  caa_identities: [anvil.localhost]
  timeout: 10s
pki:
  listen: 127.0.0.1:{{.PKIPort}}
  crl_check_interval: 2s
  files:
    /pki/root.der: var/dev/pki/root.pem
    /pki/root.crl: var/dev/pki/root.crl
log:
  level: {{.Level}}
{{.Extra}}
`))

func (ca *CA) writeConfig(port int) {
	var b bytes.Buffer
	err := serveTemplate.Execute(&b, map[string]any{
		"Port": port, "AdminPort": ca.AdminPort, "PKIPort": ca.PKIPort, "DNS": ca.DNS.Addr, "HTTPPort": ca.HTTPPort, "TLSPort": ca.TLSPort,
		"ACME": indent(ca.opts.acmeYAML, "  "), "Extra": ca.opts.extraYAML, "Level": levelOr(ca.opts.logLevel),
		"Database": indent(cmp.Or(ca.opts.database, "driver: sqlite\ndsn: var/dev/anvil.db"), "  "),
	})
	if err != nil {
		ca.t.Fatal(err)
	}
	out := b.Bytes()
	if ca.opts.hsmModule != "" {
		out = bytes.Replace(out, []byte("module: /usr/lib/softhsm/libsofthsm2.so"), []byte("module: "+ca.opts.hsmModule), 1)
	}
	if ca.opts.hsmYAML != "" {
		out = bytes.Replace(out, []byte("  max_sessions: 4\n"), []byte("  max_sessions: 4\n"+indent(ca.opts.hsmYAML, "  ")+"\n"), 1)
	}
	if err := os.WriteFile(ca.cfgPath, out, 0o600); err != nil {
		ca.t.Fatal(err)
	}
}

func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

// Start runs `anvil serve` and waits for its directory to answer.
func (ca *CA) Start() {
	ca.t.Helper()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	logf, err := os.OpenFile(ca.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		ca.t.Fatal(err)
	}
	cmd := exec.Command(anvilBin, "serve", "--config", ca.cfgPath)
	cmd.Dir = ca.Dir
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+filepath.Join(ca.Dir, "var/dev/softhsm/softhsm2.conf"))
	cmd.Env = append(cmd.Env, ca.opts.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the test binary, should it die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		ca.t.Fatal(err)
	}
	ca.cmd = cmd
	exited := make(chan error, 1)
	ca.exited = exited
	go func() { err := cmd.Wait(); logf.Close(); exited <- err }()
	client := ca.HTTPClient()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(ca.logPath)
			ca.cmd = nil
			ca.t.Fatalf("anvil serve exited at start: %v\n%s", err, tail(string(b), 50))
		default:
		}
		resp, err := client.Get(ca.DirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ca.t.Fatalf("anvil serve did not answer at %s within 60s: %v", ca.DirURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the server to exit.
func (ca *CA) Stop() {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.cmd == nil || ca.cmd.Process == nil {
		return
	}
	ca.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ca.exited:
	case <-time.After(20 * time.Second):
		ca.cmd.Process.Kill()
		<-ca.exited
	}
	ca.cmd = nil
}

// Pid is the server's process ID.
func (ca *CA) Pid() int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.cmd.Process.Pid
}

// HTTPClient trusts the dev root.
func (ca *CA) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Roots}, MaxIdleConnsPerHost: 64},
	}
}

// Log returns what the server has logged so far.
func (ca *CA) Log() string {
	b, _ := os.ReadFile(ca.logPath)
	return string(b)
}

// IntermediatePool holds the dev intermediates.
func (ca *CA) IntermediatePool() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, f := range []string{"int-ecdsa.pem", "int-rsa.pem"} {
		b, err := os.ReadFile(filepath.Join(ca.Dir, "var/dev/pki", f))
		if err != nil {
			ca.t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return pool
}

// freePort returns a loopback TCP port free for a server to bind.
//
// A port from "127.0.0.1:0" is closed again before the server binds it, and
// the kernel hands the same ephemeral range to every outgoing connection the
// tests make: under load one of those took a server's port. So ports come
// from below the ephemeral range, where only this process picks, and none is
// handed out twice.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := 10000, ephemeralLow()
	for range 1000 {
		var port int
		if hi-lo < 1000 {
			port = kernelPort(t) // no room below the ephemeral range
		} else {
			port = lo + mrand.IntN(hi-lo)
		}
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("no free loopback port found")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 32768
	}
	return lo
}

func kernelPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// DNSServer answers validation's queries: every A query with 127.0.0.1 unless
// told otherwise, TXT and CAA records from maps the test fills.
type DNSServer struct {
	Addr string
	mu   sync.Mutex
	txt  map[string][]string
	caa  map[string][]dns.CAA
	// a holds, per name, the A answers still to give, one per query; the
	// last one repeats. Names not in it answer 127.0.0.1.
	a   map[string][]net.IP
	srv *dns.Server
	// control is the URL of the HTTP control endpoint, once started.
	control string
}

// StartDNS starts a DNS server on a free UDP port of 127.0.0.1.
func StartDNS(t testing.TB) *DNSServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNSServer{Addr: pc.LocalAddr().String(), txt: map[string][]string{}, caa: map[string][]dns.CAA{}, a: map[string][]net.IP{}}
	d.srv = &dns.Server{PacketConn: pc, Handler: d}
	started := make(chan struct{})
	d.srv.NotifyStartedFunc = func() { close(started) }
	go d.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { d.srv.Shutdown() })
	return d
}

// SetA makes the A queries for name (fully qualified, with the dot) answer
// ips in turn, one per query, the last one from then on: a name whose answer
// changes between queries, as DNS rebinding makes it.
func (d *DNSServer) SetA(name string, ips ...net.IP) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[strings.ToLower(name)] = ips
}

// SetTXT sets the TXT records of name (a fully qualified name, with the dot).
func (d *DNSServer) SetTXT(name string, values ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[strings.ToLower(dns.Fqdn(name))] = values
}

// AddTXT adds a TXT record to name, beside those it has: a wildcard and its
// base name are validated at the same _acme-challenge name, each with its own
// value.
func (d *DNSServer) AddTXT(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fqdn := strings.ToLower(dns.Fqdn(name))
	d.txt[fqdn] = append(d.txt[fqdn], value)
}

// RemoveTXT removes one TXT value of name, leaving the others.
func (d *DNSServer) RemoveTXT(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fqdn := strings.ToLower(dns.Fqdn(name))
	d.txt[fqdn] = slices.DeleteFunc(d.txt[fqdn], func(v string) bool { return v == value })
}

// TXT returns the TXT values of name.
func (d *DNSServer) TXT(name string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.txt[strings.ToLower(dns.Fqdn(name))])
}

// ControlURL starts (once) a small HTTP endpoint on 127.0.0.1 through which
// a process outside the test, such as a certbot hook, edits the TXT records:
// POST with form fields op (add or remove), name and value.
func (d *DNSServer) ControlURL(t testing.TB) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.control != "" {
		return d.control
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, value := r.FormValue("name"), r.FormValue("value")
		if r.Method != http.MethodPost || name == "" || value == "" {
			http.Error(w, "POST op, name and value", http.StatusBadRequest)
			return
		}
		switch r.FormValue("op") {
		case "add":
			d.AddTXT(name, value)
		case "remove":
			d.RemoveTXT(name, value)
		default:
			http.Error(w, "op is add or remove", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d.control = "http://" + l.Addr().String() + "/txt"
	return d.control
}

// SetCAA sets the CAA records of name.
func (d *DNSServer) SetCAA(name string, records ...dns.CAA) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.caa[strings.ToLower(dns.Fqdn(name))] = records
}

func (d *DNSServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			ip := net.IPv4(127, 0, 0, 1)
			if seq := d.a[name]; len(seq) > 0 {
				ip = seq[0]
				if len(seq) > 1 {
					d.a[name] = seq[1:]
				}
			}
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
		case dns.TypeTXT:
			hdr.Rrtype = dns.TypeTXT
			for _, v := range d.txt[name] {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
			}
		case dns.TypeCAA:
			hdr.Rrtype = dns.TypeCAA
			for _, c := range d.caa[name] {
				rec := c
				rec.Hdr = hdr
				m.Answer = append(m.Answer, &rec)
			}
		}
	}
	w.WriteMsg(m)
}

// readChain parses a PEM chain.
func readChain(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}
