package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"
	"github.com/go-jose/go-jose/v4"
	"github.com/miekg/dns"
)

// pebbleProc is a Pebble that BenchmarkACMEFlows loads like Anvil: CA holds
// the DirURL, Roots, HTTPPort and DNS the lego helpers use as they do
// Anvil's. Pebble's VA resolves through the harness's DNS server (every
// name is 127.0.0.1) and validates http-01 on the same kind of responder.
//
// Pebble's own test configuration is used as it ships, except for the
// addresses, and three environment switches: PEBBLE_VA_NOSLEEP=1 (its VA
// otherwise sleeps up to 15 s before each validation),
// PEBBLE_WFE_NONCEREJECT=0 (otherwise it rejects 5% of good nonces on
// purpose, a fault injection Anvil does not do) and PEBBLE_ALTERNATE_ROOTS=1:
// Anvil's bench configuration offers an alternate chain (through the
// cross-signed root), and lego downloads every chain a certificate's Link
// headers offer, so without one Pebble answered five requests per flow to
// Anvil's six. -pebble-env adds more:
// PEBBLE_AUTHZREUSE=0 keeps Pebble out of MemoryStore.FindValidAuthorization,
// a scan of every authorization under the store's read lock that takes each
// authorization's lock: with wfe.Authz holding an authorization's lock and
// waiting for the store's (behind a writer), Pebble v2.10.3 deadlocks under
// concurrent polling and new orders — the stalls this benchmark reports.
type pebbleProc struct {
	CA      *CA
	bin     string
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	logf    *os.File
}

// startPebble runs the pebble binary at bin on free loopback ports until the
// benchmark ends.
func startPebble(b testing.TB, bin string) *pebbleProc {
	b.Helper()
	certs, err := pebbleCerts(bin)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ca := &CA{t: b, Dir: dir}
	// Pebble's VA asks its -dnsserver over TCP; the harness's server answers
	// UDP: the same handler serves TCP on the same port, if that is free
	// (the UDP port is the kernel's pick), else on a server of a new port.
	var tl net.Listener
	for range 20 {
		ca.DNS = StartDNS(b)
		if tl, err = net.Listen("tcp", ca.DNS.Addr); err == nil {
			break
		}
		ca.DNS.srv.Shutdown()
	}
	if err != nil {
		b.Fatalf("DNS over TCP on %s: %v", ca.DNS.Addr, err)
	}
	dnsTCP := &dns.Server{Listener: tl, Handler: ca.DNS}
	go dnsTCP.ActivateAndServe()
	b.Cleanup(func() { dnsTCP.Shutdown() })
	port, mgmt := freePort(b), freePort(b)
	ca.HTTPPort, ca.TLSPort = freePort(b), freePort(b)
	ca.BaseURL = fmt.Sprintf("https://localhost:%d", port)
	ca.DirURL = ca.BaseURL + "/dir"
	ca.Roots = x509.NewCertPool()
	root, err := os.ReadFile(filepath.Join(certs, "pebble.minica.pem"))
	if err != nil || !ca.Roots.AppendCertsFromPEM(root) {
		b.Fatalf("pebble's test root: %v", err)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             filepath.Join(certs, "localhost/cert.pem"),
		"privateKey":              filepath.Join(certs, "localhost/key.pem"),
		"httpPort":                ca.HTTPPort,
		"tlsPort":                 ca.TLSPort,
		"ocspResponderURL":        "",
		"domainBlocklist":         []string{"blocked-domain.example"},
		"retryAfter":              map[string]int{"authz": 3, "order": 5},
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "default", "validityPeriod": 7776000},
		},
	}}
	js, _ := json.Marshal(cfg)
	p := &pebbleProc{CA: ca, bin: bin, cfgPath: filepath.Join(dir, "pebble.json"), logPath: filepath.Join(dir, "pebble.log")}
	if err := os.WriteFile(p.cfgPath, js, 0o600); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			if out, err := os.ReadFile(p.logPath); err == nil {
				b.Logf("pebble log:\n%s", tail(string(out), 100))
			}
		}
	})
	p.start(b)
	return p
}

func (p *pebbleProc) Pid() int { return p.cmd.Process.Pid }

func (p *pebbleProc) start(b testing.TB) {
	var err error
	if p.logf, err = os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "-config", p.cfgPath, "-dnsserver", p.CA.DNS.Addr)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_ALTERNATE_ROOTS=1")
	if *benchPebbleEnv != "" {
		p.cmd.Env = append(p.cmd.Env, strings.Fields(*benchPebbleEnv)...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logf, p.logf
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start pebble: %v", err)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.CA.Roots}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.CA.DirURL)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(p.logPath)
			b.Fatalf("pebble did not answer %s within 30 s: %v\n%s", p.CA.DirURL, err, tail(string(out), 50))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pebbleProc) stop() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.logf.Close()
		p.cmd = nil
	}
}

// dumpAndRestart is for a Pebble that stopped answering: SIGQUIT makes it
// write every goroutine's stack to its log, which is kept in the system's
// temporary directory for whoever reads the benchmark's output; then a
// fresh Pebble (empty, on the same ports) takes its place for the next
// level.
func (p *pebbleProc) dumpAndRestart(b testing.TB) {
	p.cmd.Process.Signal(syscall.SIGQUIT)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.logf.Close()
	p.cmd = nil
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("anvil-bench-pebble-hang-%d.log", time.Now().Unix()))
	if out, err := os.ReadFile(p.logPath); err == nil && os.WriteFile(kept, out, 0o644) == nil {
		b.Logf("Pebble stopped answering: its log and goroutine dump are in %s", kept)
	}
	os.Remove(p.logPath)
	p.start(b)
}

// pebbleCerts finds Pebble's test certificates (its TLS certificate for
// localhost and the minica root that signed it) in the module cache, where
// `go install pebble@version` left the source of the binary at bin.
func pebbleCerts(bin string) (string, error) {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "", fmt.Errorf("read pebble's build info: %w", err)
	}
	var version string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/letsencrypt/pebble/v2" {
			version = f[2]
		}
	}
	if version == "" {
		return "", fmt.Errorf("%s was not built from a github.com/letsencrypt/pebble/v2 module release", bin)
	}
	cache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(cache)), "github.com/letsencrypt/pebble/v2@"+version, "test/certs")
	if _, err := os.Stat(filepath.Join(dir, "pebble.minica.pem")); err != nil {
		return "", fmt.Errorf("pebble %s test certificates: %w", version, err)
	}
	return dir, nil
}

// benchRow is one concurrency level of BenchmarkACMEFlows.
type benchRow struct {
	conc          int
	anvil, pebble *benchResult
}

// printSideBySide writes Anvil's and Pebble's figures per concurrency level
// and their ratios (Anvil / Pebble). A stalled run shows as a stall, and no
// ratio is computed from it.
func printSideBySide(w io.Writer, rows []benchRow) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "\nAnvil vs Pebble, same load, alternating per level (load average at the end: %s)\n", strings.Join(strings.Fields(string(load))[:3], " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "C\t\tcerts/s\tp50 ms\tp99 ms\tserver CPU ms/cert\tclient CPU ms/cert\terrors\t")
	line := func(c int, name string, r *benchResult) {
		switch {
		case r == nil:
			fmt.Fprintf(tw, "%d\t%s\tnot run\t\t\t\t\t\t\n", c, name)
		case r.stall != "":
			fmt.Fprintf(tw, "%d\t%s\tSTALLED\t\t\t\t\t%d\t  %s; %d flows under it, their p50 %.1f ms\n", c, name, r.errors, r.stall, r.flows, ms(r.p50))
		default:
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%d\t\n", c, name, r.certsPerSec(), ms(r.p50), ms(r.p99), r.serverCPUPerCert(), r.clientCPUPerCert(), r.errors)
		}
	}
	for _, row := range rows {
		line(row.conc, "anvil", row.anvil)
		line(row.conc, "pebble", row.pebble)
		a, p := row.anvil, row.pebble
		if a == nil || p == nil || a.stall != "" || p.stall != "" {
			fmt.Fprintf(tw, "%d\tanvil/pebble\t-\t-\t-\t-\t-\t\t\n", row.conc)
			continue
		}
		fmt.Fprintf(tw, "%d\tanvil/pebble\t%.2fx\t%.2fx\t%.2fx\t%.2fx\t%.2fx\t\t\n", row.conc,
			a.certsPerSec()/p.certsPerSec(), ms(a.p50)/ms(p.p50), ms(a.p99)/ms(p.p99),
			a.serverCPUPerCert()/p.serverCPUPerCert(), a.clientCPUPerCert()/p.clientCPUPerCert())
	}
	tw.Flush()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pollFast is the load generator's HTTP transport, the same for Anvil and
// Pebble. Pebble validates asynchronously: lego's look at the authorization
// right after its challenge POST finds it pending, and lego then waits 5 s
// (±50%, no Retry-After below a second is possible) before the next — every
// Pebble flow would measure that sleep, not Pebble. So when an authorization
// comes back pending with a challenge processing, pollFast asks again itself
// every millisecond (a fresh POST-as-GET with the next nonce, signed with
// the account key) until it is not, and hands lego that answer. Anvil
// answers a challenge POST once validated, so it never takes this path.
type pollFast struct {
	base http.RoundTripper
	key  *ecdsa.PrivateKey
}

func (t pollFast) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Method == http.MethodPost && req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			reqBody, _ = io.ReadAll(rc)
		}
	}
	deadline := time.Now().Add(*benchStallAfter)
	for {
		res, err := t.base.RoundTrip(req)
		if err != nil || reqBody == nil || res.StatusCode != http.StatusOK {
			return res, err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		if !processing(body) || time.Now().After(deadline) {
			return res, nil
		}
		next, err := t.postAsGet(req, reqBody, res.Header.Get("Replay-Nonce"))
		if err != nil {
			return res, nil // lego's own polling takes over
		}
		time.Sleep(time.Millisecond)
		req = next
	}
}

// processing says whether body is an authorization still pending with a
// challenge being validated.
func processing(body []byte) bool {
	var authz struct {
		Status     string
		Challenges []struct{ Status string }
	}
	if json.Unmarshal(body, &authz) != nil || authz.Status != "pending" {
		return false
	}
	for _, c := range authz.Challenges {
		if c.Status == "processing" {
			return true
		}
	}
	return false
}

// postAsGet is a POST-as-GET of req's URL as the account that signed
// reqBody (its kid), with nonce.
func (t pollFast) postAsGet(req *http.Request, reqBody []byte, nonce string) (*http.Request, error) {
	var jws struct{ Protected string }
	if err := json.Unmarshal(reqBody, &jws); err != nil {
		return nil, err
	}
	hdr, err := base64.RawURLEncoding.DecodeString(jws.Protected)
	if err != nil {
		return nil, err
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(hdr, &h); err != nil || h.Kid == "" || nonce == "" {
		return nil, fmt.Errorf("no kid or nonce")
	}
	opts := (&jose.SignerOptions{}).WithHeader("kid", h.Kid).WithHeader("nonce", nonce).WithHeader("url", req.URL.String())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: t.key}, opts)
	if err != nil {
		return nil, err
	}
	obj, err := signer.Sign(nil)
	if err != nil {
		return nil, err
	}
	// Flattened JSON with "payload": "" (go-jose's omits the empty payload).
	compact, err := obj.CompactSerialize()
	if err != nil {
		return nil, err
	}
	parts := strings.Split(compact, ".")
	body, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": "", "signature": parts[2]})
	next, err := http.NewRequestWithContext(req.Context(), http.MethodPost, req.URL.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	next.Header = req.Header.Clone()
	return next, nil
}

// benchClient is a registered lego client of target for BenchmarkACMEFlows.
// A registration that fails is returned as an error: from Pebble, a stall.
func benchClient(b testing.TB, target *CA) (*lego.Client, error) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	user := &legoUser{key: key}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = target.DirURL
	hc := target.HTTPClient()
	hc.Transport = pollFast{base: hc.Transport, key: key}
	cfg.HTTPClient = hc
	// lego paces its authorization fetches for Let's Encrypt's rate limits
	// (18 requests/s: 55 ms per authorization); a load generator for our own
	// CA lifts that.
	cfg.Certificate.OverallRequestLimit = 1000
	// lego polls an order that is still processing after finalize every
	// Timeout/60 (500 ms by default); Pebble finalizes asynchronously, Anvil
	// before it answers. 3 s: every 50 ms.
	cfg.Certificate.Timeout = 3 * time.Second
	client, err := lego.NewClient(cfg)
	if err != nil {
		b.Fatalf("lego client: %v", err)
	}
	if err := client.Challenge.SetHTTP01Provider(target.challengeServer(b)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *benchFlowTimeout)
	defer cancel()
	reg, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	user.reg = reg
	return client, nil
}
