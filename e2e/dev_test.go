package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// devCA is a running `anvil dev`, started as a pipeline would: the binary
// alone in an empty directory, with nothing in the environment but PATH and
// TMPDIR (no SOFTHSM2_CONF, no checkout).
type devCA struct {
	*CA
	MgmtURL string
	Tmp     string // the TMPDIR it was given
	cmd     *exec.Cmd
	stderr  *syncBuffer
	done    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// devEnv is the environment `anvil dev` runs with in these tests.
func devEnv(tmp string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp}
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" {
		env = append(env, "SOFTHSM2_MODULE="+m)
	}
	return append(env, extra...)
}

// startDev runs `anvil dev` on free loopback ports and waits until it says it
// is ready, then fetches its trust anchor from the management listener as a
// pipeline would (curl http://localhost:15000/roots/0).
func startDev(t *testing.T, env []string, args ...string) *devCA {
	t.Helper()
	ports := map[string]int{}
	for _, p := range []string{"listen", "management-listen", "http-port", "tls-port"} {
		ports[p] = freePort(t)
	}
	return startDevOn(t, ports, env, args...)
}

func startDevOn(t *testing.T, ports map[string]int, env []string, args ...string) *devCA {
	t.Helper()
	tmp := t.TempDir()
	if ports["env-only"] == 0 {
		args = append([]string{"dev",
			"--listen", "127.0.0.1:" + strconv.Itoa(ports["listen"]),
			"--management-listen", "127.0.0.1:" + strconv.Itoa(ports["management-listen"]),
			"--http-port", strconv.Itoa(ports["http-port"]), "--tls-port", strconv.Itoa(ports["tls-port"]),
		}, args...)
	}
	cmd := exec.Command(anvilBin, args...)
	cmd.Dir = t.TempDir() // an empty directory
	cmd.Env = devEnv(tmp, env...)
	d := &devCA{Tmp: tmp, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		var out strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "  state:") {
				ready <- out.String()
			}
		}
		io.Copy(io.Discard, stdout)
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() { d.stop(t) })
	var banner string
	select {
	case banner = <-ready:
	case err := <-d.done:
		d.done <- err
		t.Fatalf("anvil dev exited before it was ready: %v\n%s", err, tail(d.stderr.String(), 40))
	case <-time.After(2 * time.Minute): // a guard against a hang, not a timing assertion
		t.Fatalf("anvil dev not ready after 2 minutes\n%s", tail(d.stderr.String(), 40))
	}
	dirURL := "https://localhost:" + strconv.Itoa(ports["listen"]) + "/directory"
	if !strings.Contains(banner, "ACME directory: "+dirURL) {
		t.Fatalf("anvil dev did not print its directory URL %s:\n%s", dirURL, banner)
	}
	d.MgmtURL = "http://127.0.0.1:" + strconv.Itoa(ports["management-listen"])
	rootPEM := d.get(t, "/roots/0")
	rootFile := filepath.Join(t.TempDir(), "anvil-root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("/roots/0 is not PEM: %q", rootPEM)
	}
	d.CA = &CA{t: t, BaseURL: strings.TrimSuffix(dirURL, "/directory"), DirURL: dirURL, Roots: pool, RootPEM: rootFile,
		HTTPPort: ports["http-port"], TLSPort: ports["tls-port"], AdminPort: ports["management-listen"]}
	return d
}

// get fetches a path of the management listener and fails unless it is 200.
func (d *devCA) get(t *testing.T, path string) []byte {
	t.Helper()
	st, b := d.fetch(t, path)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, st, b)
	}
	return b
}

func (d *devCA) fetch(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(d.MgmtURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// stop ends the process with SIGTERM, as a CI runner does, and waits.
func (d *devCA) stop(t *testing.T) {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Errorf("anvil dev exited with %v\n%s", err, tail(d.stderr.String(), 40))
		}
	case <-time.After(time.Minute): // a guard against a hang
		d.cmd.Process.Kill()
		t.Errorf("anvil dev did not stop on SIGTERM\n%s", tail(d.stderr.String(), 40))
	}
}

// From an empty directory: the root comes from the management listener, lego
// and certbot each get a certificate trusting only that root, the
// intermediates are served like Pebble's, no key is, and a second start on a
// kept directory reuses tokens, keys, certificates and database.
func TestDevLegoAndCertbot(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	ports := map[string]int{}
	for _, p := range []string{"listen", "management-listen", "http-port", "tls-port"} {
		ports[p] = freePort(t)
	}
	d := startDevOn(t, ports, nil, "--dir", state)
	if !strings.Contains(d.stderr.String(), "cold_start=") {
		t.Errorf("anvil dev does not log its cold start:\n%s", tail(d.stderr.String(), 20))
	}

	// certbot, with only that root as its trust anchor (first: its standalone
	// server needs the http-01 port that the lego responder keeps after).
	cdir := t.TempDir()
	out := certbot(t, d.CA, cdir, "certonly", "--standalone", "--agree-tos", "--register-unsafely-without-email",
		"--http-01-port", strconv.Itoa(d.HTTPPort), "--http-01-address", "127.0.0.1", "-d", "certbot.dev.localhost")
	if !strings.Contains(out, "Successfully received certificate") {
		t.Fatalf("certbot output:\n%s", out)
	}
	fullchain, err := os.ReadFile(filepath.Join(cdir, "config", "live", "certbot.dev.localhost", "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	verifyBundle(t, d.CA, fullchain, "certbot.dev.localhost")

	// lego, through the same root.
	client, user := legoClient(t, d.CA, newKey(t))
	register(t, client, user)
	res := mustObtain(t, client, obtainReq("lego.dev.localhost"))
	leaf := verifyBundle(t, d.CA, res.Certificate, "lego.dev.localhost")

	// /intermediates/0 is the leaf's issuer; /ca-bundle.pem holds the root;
	// there are no keys to download.
	inter := readChain(t, d.get(t, "/intermediates/0"))
	if len(inter) != 1 || leaf.CheckSignatureFrom(inter[0]) != nil {
		t.Errorf("/intermediates/0 is not the issuer of the leaf")
	}
	if !bytes.Contains(d.get(t, "/ca-bundle.pem"), bytes.TrimSpace(d.get(t, "/roots/0"))) {
		t.Errorf("/ca-bundle.pem does not hold /roots/0")
	}
	alt := readChain(t, d.get(t, "/roots/1"))
	if len(alt) != 1 || alt[0].Subject.String() == readChain(t, d.get(t, "/roots/0"))[0].Subject.String() {
		t.Errorf("/roots/1 is not the second root")
	}
	for _, p := range []string{"/root-keys/0", "/intermediate-keys/0", "/roots/7"} {
		if st, b := d.fetch(t, p); st != http.StatusNotFound || bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("GET %s: %d %s", p, st, b)
		}
	}
	// CRLs and OCSP are on the management listener, at the URLs the
	// certificates carry.
	if len(leaf.CRLDistributionPoints) != 1 || !strings.HasPrefix(leaf.CRLDistributionPoints[0], "http://localhost:"+strconv.Itoa(ports["management-listen"])+"/") {
		t.Errorf("leaf CRL URL %v is not on the management listener", leaf.CRLDistributionPoints)
	}

	// Authorization reuse is on by default: a second order for the same name
	// reuses the valid authorization (the knob test shows it off).
	raw := newRawClient(t, d.CA, newKey(t))
	raw.register()
	_, first := raw.newOrder(nil, "reuse.dev.localhost")
	ch := raw.authz(first.Authorizations[0]).challenge(t, "http-01")
	d.challengeServer(t).set(ch.Token, ch.Token+"."+raw.thumbprint())
	if got := raw.respond(ch); got.Status != "valid" {
		t.Fatalf("http-01: %s %+v", got.Status, got.Error)
	}
	_, second := raw.newOrder(nil, "reuse.dev.localhost")
	if second.Authorizations[0] != first.Authorizations[0] {
		t.Errorf("without the knob a second order got a fresh authorization")
	}

	// A second start on the kept directory: same root, same database (the
	// lego account is still there).
	root := d.get(t, "/roots/0")
	d.stop(t)
	// New validation ports: the lego responder of the first start keeps its
	// port until the test ends.
	ports["http-port"], ports["tls-port"] = freePort(t), freePort(t)
	d2 := startDevOn(t, ports, nil, "--dir", state)
	if !bytes.Equal(d2.get(t, "/roots/0"), root) {
		t.Errorf("a second start on a kept directory made a new root")
	}
	client2, user2 := legoClient(t, d2.CA, user.key)
	acct, err := client2.Registration.ResolveAccountByKey(context.Background())
	if err != nil {
		t.Fatalf("the account of the first start is gone: %v", err)
	}
	user2.reg = acct
	mustObtain(t, client2, obtainReq("again.dev.localhost"))
}

// Each test knob does what Pebble's namesake does, and is logged as unsafe:
// a share of nonces answered with badNonce, authorization reuse off, every
// name resolved to one address (here a name no DNS knows); then challenges
// valid without a challenge server. The temporary state directory is removed
// at exit.
func TestDevKnobs(t *testing.T) {
	d := startDev(t, []string{"PEBBLE_WFE_NONCEREJECT=50", "PEBBLE_AUTHZREUSE=0"}, "--resolve-to", "127.0.0.1")
	for _, knob := range []string{"PEBBLE_WFE_NONCEREJECT", "PEBBLE_AUTHZREUSE", "ANVIL_DEV_RESOLVE_TO"} {
		if !strings.Contains(d.stderr.String(), "UNSAFE") || !strings.Contains(d.stderr.String(), knob) {
			t.Errorf("knob %s not logged as unsafe:\n%s", knob, tail(d.stderr.String(), 20))
		}
	}
	raw := newRawClient(t, d.CA, newKey(t))
	var bad, ok int
	post := func(url string, payload any) (int, []byte, http.Header) {
		for range 60 {
			st, body, h := raw.post(url, payload)
			if st == http.StatusBadRequest && strings.Contains(string(body), "urn:ietf:params:acme:error:badNonce") {
				bad++
				continue
			}
			ok++
			return st, body, h
		}
		t.Fatalf("60 badNonce in a row for %s", url)
		return 0, nil, nil
	}
	st, body, h := post(raw.url("newAccount"), map[string]any{"termsOfServiceAgreed": true})
	if st != http.StatusCreated {
		t.Fatalf("newAccount: %d %s", st, body)
	}
	raw.kid = h.Get("Location")
	for range 30 {
		if st, body, _ := post(raw.kid, nil); st != http.StatusOK {
			t.Fatalf("account: %d %s", st, body)
		}
	}
	if bad == 0 || ok == 0 {
		t.Errorf("PEBBLE_WFE_NONCEREJECT=50: %d badNonce and %d answered; want some of each", bad, ok)
	}
	t.Logf("PEBBLE_WFE_NONCEREJECT=50: %d of %d requests answered badNonce", bad, bad+ok)

	// A name that no DNS knows validates over http-01 on 127.0.0.1, and a
	// second order for it gets a fresh, pending authorization.
	name := "resolve-to.test"
	newOrder := func() acmeOrder {
		st, body, _ := post(raw.url("newOrder"), map[string]any{"identifiers": identifiers(name)})
		if st != http.StatusCreated {
			t.Fatalf("newOrder: %d %s", st, body)
		}
		var o acmeOrder
		json.Unmarshal(body, &o)
		return o
	}
	first := newOrder()
	authzOf := func(url string) acmeAuthz {
		st, body, _ := post(url, nil)
		if st != http.StatusOK {
			t.Fatalf("authz: %d %s", st, body)
		}
		var a acmeAuthz
		json.Unmarshal(body, &a)
		return a
	}
	ch := authzOf(first.Authorizations[0]).challenge(t, "http-01")
	d.challengeServer(t).set(ch.Token, ch.Token+"."+raw.thumbprint())
	if st, body, _ := post(ch.URL, map[string]any{}); st != http.StatusOK || jsonField(t, body, "status") != "valid" {
		t.Fatalf("http-01 with --resolve-to 127.0.0.1: %d %s\n%s", st, body, tail(d.stderr.String(), 20))
	}
	second := newOrder()
	if second.Authorizations[0] == first.Authorizations[0] || authzOf(second.Authorizations[0]).Status != "pending" {
		t.Errorf("PEBBLE_AUTHZREUSE=0: the second order reused the valid authorization")
	}
	// A well-behaved client (lego retries badNonce with the new nonce) gets
	// its certificate through all three knobs.
	client, user := legoClient(t, d.CA, newKey(t))
	register(t, client, user)
	verifyBundle(t, d.CA, mustObtain(t, client, obtainReq("lego.resolve-to.test")).Certificate, "lego.resolve-to.test")
	d.stop(t)

	// PEBBLE_VA_ALWAYS_VALID: nothing listens on the http-01 port, yet the
	// challenge is valid. The temporary state directory goes at exit.
	v := startDev(t, []string{"PEBBLE_VA_ALWAYS_VALID=1"})
	if !strings.Contains(v.stderr.String(), "PEBBLE_VA_ALWAYS_VALID") {
		t.Errorf("always-valid not logged as unsafe")
	}
	raw = newRawClient(t, v.CA, newKey(t))
	raw.register()
	_, o := raw.newOrder(nil, "nobody-answers.dev.localhost")
	if got := raw.respond(raw.authz(o.Authorizations[0]).challenge(t, "http-01")); got.Status != "valid" {
		t.Errorf("PEBBLE_VA_ALWAYS_VALID=1: challenge %s: %+v", got.Status, got.Error)
	}
	v.stop(t)
	if left, _ := filepath.Glob(filepath.Join(v.Tmp, "anvil-dev-*")); len(left) != 0 {
		t.Errorf("the temporary state directory was not removed: %v", left)
	}
}

// `anvil serve` refuses every knob, whatever carries it: the environment
// variables, YAML keys, flags. The same configuration without a knob starts.
func TestServeRefusesDevKnobs(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	d := startDev(t, nil, "--dir", state)
	d.stop(t)
	cfg, err := os.ReadFile(filepath.Join(state, "serve.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(env []string, yaml string, flags ...string) (string, error) {
		path := filepath.Join(t.TempDir(), "serve.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(anvilBin, append([]string{"serve", "--config", path}, flags...)...)
		cmd.Env = devEnv(t.TempDir(), append(env, "SOFTHSM2_CONF="+filepath.Join(state, "softhsm", "softhsm2.conf"))...)
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// A refusal exits at once; a serve that starts is stopped once it
		// says it serves.
		for {
			select {
			case err := <-done:
				return out.String(), err
			case <-time.After(100 * time.Millisecond):
				if strings.Contains(out.String(), "anvil serving") {
					cmd.Process.Signal(syscall.SIGTERM)
					<-done
					return out.String(), nil
				}
			}
		}
	}
	if out, err := serve(nil, string(cfg)); err != nil || !strings.Contains(out, "anvil serving") {
		t.Fatalf("anvil serve does not start with anvil dev's configuration: %v\n%s", err, tail(out, 20))
	}
	for _, env := range []string{"PEBBLE_WFE_NONCEREJECT=50", "PEBBLE_AUTHZREUSE=0", "PEBBLE_VA_ALWAYS_VALID=1", "ANVIL_DEV_RESOLVE_TO=127.0.0.1"} {
		out, err := serve([]string{env}, string(cfg))
		if name, _, _ := strings.Cut(env, "="); err == nil || !strings.Contains(out, name) || !strings.Contains(out, "refuses") {
			t.Errorf("anvil serve with %s: %v\n%s", env, err, tail(out, 5))
		}
	}
	for _, key := range []string{"knobs: {nonceReject: 50}", "nonce_reject: 50", "nonce-reject: 50", "authz_reuse: 0", "authz_skip: 100",
		"always_valid: true", "alwaysValid: true", "resolve_to: 127.0.0.1", "resolveTo: 127.0.0.1"} {
		out, err := serve(nil, string(cfg)+"\n"+key+"\n")
		if field, _, _ := strings.Cut(key, ":"); err == nil || !strings.Contains(out, field) {
			t.Errorf("anvil serve with YAML %q: %v\n%s", key, err, tail(out, 5))
		}
	}
	for _, flag := range []string{"--nonce-reject=50", "--authz-reuse=0", "--always-valid=1", "--resolve-to=127.0.0.1"} {
		out, err := serve(nil, string(cfg), flag)
		if err == nil || !strings.Contains(out, "flag provided but not defined") {
			t.Errorf("anvil serve %s: %v\n%s", flag, err, tail(out, 5))
		}
	}
}

// The container image's entry point, run as a plain command (this machine has
// no container engine): the Dockerfile's ENTRYPOINT and CMD, configured only
// by its ANVIL_DEV_* environment (loopback instead of 0.0.0.0 here), serves a
// directory and its root.
func TestDevImageEntryPoint(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	if !strings.Contains(text, `ENTRYPOINT ["anvil"]`) || !strings.Contains(text, `CMD ["dev"]`) {
		t.Fatalf("the Dockerfile's entry point is not `anvil dev`")
	}
	ports := map[string]int{"env-only": 1}
	var env []string
	for _, name := range []string{"ANVIL_DEV_LISTEN", "ANVIL_DEV_MANAGEMENT_LISTEN"} {
		i := strings.Index(text, name+"=")
		if i < 0 {
			t.Fatalf("the Dockerfile sets no %s", name)
		}
		value := strings.Fields(text[i+len(name)+1:])[0]
		if !strings.HasPrefix(value, "0.0.0.0:") {
			t.Errorf("%s=%s: a container must listen on every interface", name, value)
		}
		port := freePort(t)
		ports[map[string]string{"ANVIL_DEV_LISTEN": "listen", "ANVIL_DEV_MANAGEMENT_LISTEN": "management-listen"}[name]] = port
		env = append(env, name+"=127.0.0.1:"+strconv.Itoa(port))
	}
	d := startDevOn(t, ports, env, "dev")
	resp, err := d.HTTPClient().Get(d.DirURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("directory: %d", resp.StatusCode)
	}
}
