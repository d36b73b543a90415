package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/anvil-pki/anvil/ceremony"
	"github.com/anvil-pki/anvil/config"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// devConfigs are the configurations `anvil dev` runs: copies of configs/dev
// as templates, built into the binary so that it needs no checkout (and
// `go install` gives a working `anvil dev`).
//
//go:embed devconfigs
var devConfigs embed.FS

func init() {
	register("dev", "a throwaway CA for tests and CI: SoftHSM2 token, dev hierarchy, ACME on SQLite", runDev)
}

// devCeremonies are the dev hierarchy's ceremonies in order; rsa marks the
// ones only --rsa runs.
var devCeremonies = []struct {
	file string
	rsa  bool
}{
	{"01-root.yaml", false},
	{"02-int-ecdsa-key.yaml", false},
	{"03-int-rsa-key.yaml", true},
	{"04-int-ecdsa.yaml", false},
	{"05-int-rsa.yaml", true},
	{"06-root-crl.yaml", false},
	{"07-root-x2.yaml", false},
	{"08-cross-x1-by-x2.yaml", false},
}

var devTokens = []string{"anvil-dev-root", "anvil-dev-online"}

// devOptions are the flags of `anvil dev`.
type devOptions struct {
	dir, listen, management, host, dnsServer string
	keep, rsa                                bool
	httpPort, tlsPort                        int
	logFormat, logLevel                      string
	nonceReject, authzReuse                  string
	alwaysValid                              string
	resolveTo                                string
}

// devFlags declares the flags. Every flag can also come from the environment
// (ANVIL_DEV_ and the flag's name in capitals, "-" as "_"), because a CI
// service container takes environment variables but no arguments; the knobs
// also answer to Pebble's variables.
func devFlags(o *devOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "state directory (tokens, keys, certificates, database); reused when it holds a previous run. Default: a new temporary directory, removed at exit unless --keep")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary state directory at exit (a --dir is always kept)")
	fs.BoolVar(&o.rsa, "rsa", false, "also make and serve an RSA-2048 intermediate (slower start)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:14000", "ACME listener (HTTPS)")
	fs.StringVar(&o.management, "management-listen", "127.0.0.1:15000", "management listener (HTTP): /roots/0, /intermediates/0, /ca-bundle.pem, CRLs, OCSP, /health, /metrics")
	fs.StringVar(&o.host, "host", "localhost", "name clients use to reach the server: in the directory URL and the server's TLS certificate")
	fs.IntVar(&o.httpPort, "http-port", 5002, "port http-01 validation connects to")
	fs.IntVar(&o.tlsPort, "tls-port", 5001, "port tls-alpn-01 validation connects to")
	fs.StringVar(&o.dnsServer, "dnsserver", "", "DNS server validation asks, IP[:port] (Pebble's -dnsserver; e.g. pebble-challtestsrv). Default: /etc/resolv.conf")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn, error")
	fs.StringVar(&o.nonceReject, "nonce-reject", "", "UNSAFE test knob: share (0-100) of valid nonces answered with badNonce (env PEBBLE_WFE_NONCEREJECT)")
	fs.StringVar(&o.authzReuse, "authz-reuse", "", "UNSAFE test knob: share (0-100) of new orders that reuse valid authorizations; 0 turns reuse off (env PEBBLE_AUTHZREUSE; default 100)")
	fs.StringVar(&o.alwaysValid, "always-valid", "", "UNSAFE test knob: 1 accepts every challenge without fetching anything (env PEBBLE_VA_ALWAYS_VALID)")
	fs.StringVar(&o.resolveTo, "resolve-to", "", "UNSAFE test knob: validation resolves every name to this address (or to what this host name resolves to at each lookup, e.g. host.docker.internal), as pebble-challtestsrv's -defaultIPv4 (env ANVIL_DEV_RESOLVE_TO)")
	return fs
}

// pebbleEnv maps knob flags to Pebble's environment variables.
var pebbleEnv = map[string]string{
	"nonce-reject": "PEBBLE_WFE_NONCEREJECT",
	"authz-reuse":  "PEBBLE_AUTHZREUSE",
	"always-valid": "PEBBLE_VA_ALWAYS_VALID",
}

// envDefaults sets every flag not given on the command line from its
// environment variable, if that is set.
func envDefaults(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		names := []string{"ANVIL_DEV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))}
		if p, ok := pebbleEnv[f.Name]; ok {
			names = append(names, p)
		}
		for _, n := range names {
			if v, ok := os.LookupEnv(n); ok {
				if serr := fs.Set(f.Name, v); serr != nil {
					err = fmt.Errorf("%s=%q: %w", n, v, serr)
				}
				return
			}
		}
	})
	return err
}

// knobs turns the knob flags into devKnobs.
func (o *devOptions) knobs() (devKnobs, error) {
	var k devKnobs
	var err error
	if o.nonceReject != "" {
		if k.nonceReject, err = percent("nonce-reject", o.nonceReject); err != nil {
			return k, err
		}
	}
	if o.authzReuse != "" {
		reuse, err := percent("authz-reuse", o.authzReuse)
		if err != nil {
			return k, err
		}
		k.authzSkip = 100 - reuse
	}
	if k.alwaysValid, err = boolish("always-valid", o.alwaysValid); err != nil {
		return k, err
	}
	if k.resolveTo, k.resolveToName, err = parseResolveTo(o.resolveTo); err != nil {
		return k, err
	}
	if o.resolveTo != "" && o.dnsServer != "" {
		return k, errors.New("--resolve-to and --dnsserver exclude each other: the first answers every lookup itself")
	}
	return k, nil
}

func runDev(args []string) (err error) {
	began := processStart()
	var o devOptions
	fs := devFlags(&o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := envDefaults(fs); err != nil {
		return err
	}
	knobs, err := o.knobs()
	if err != nil {
		return err
	}
	_, mgmtPort, err := net.SplitHostPort(o.management)
	if err != nil {
		return fmt.Errorf("--management-listen %q: %w", o.management, err)
	}
	_, acmePort, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	logger := installLogger(logConfig{Format: o.logFormat, Level: o.logLevel})
	if _, ok := os.LookupEnv("PEBBLE_VA_NOSLEEP"); ok {
		logger.Info("PEBBLE_VA_NOSLEEP is not needed: Anvil never sleeps before a validation")
	}

	dir, temporary := o.dir, o.dir == ""
	if temporary {
		if dir, err = os.MkdirTemp("", "anvil-dev-"); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		if !o.keep {
			defer func() {
				if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
					err = fmt.Errorf("removing the state directory: %w", rerr)
				}
			}()
		}
	} else if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	unlock, err := lockDevDir(dir)
	if err != nil {
		return err
	}
	defer unlock()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as startDaemon does for `anvil serve`
	}

	st := &devState{dir: dir, opts: &o, log: logger}
	if err := st.tokens(); err != nil {
		return err
	}
	if err := st.hierarchy(ctx, "http://"+net.JoinHostPort(o.host, mgmtPort)); err != nil {
		return err
	}
	var resolvers []string
	if o.dnsServer != "" {
		resolvers = []string{o.dnsServer}
	}
	if o.resolveTo != "" {
		d, addr, err := startOneAddressDNS(knobs.resolveTo, knobs.resolveToName)
		if err != nil {
			return err
		}
		defer d.close()
		resolvers = []string{addr}
	}
	baseURL := "https://" + net.JoinHostPort(o.host, acmePort)
	cfg, err := st.serveConfig(baseURL, "http://"+net.JoinHostPort(o.host, mgmtPort), resolvers)
	if err != nil {
		return err
	}
	cfg.knobs = knobs
	logger = installLogger(cfg.Log)

	srv, err := buildServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer srv.close()
	srv.devHandler, err = newManagementHandler(dir, o.rsa, srv.publisher.Handler("/ocsp"))
	if err != nil {
		return err
	}
	mgmt := "http://" + net.JoinHostPort(o.host, mgmtPort)
	srv.ready = func() {
		took := time.Since(began)
		logger.Info("anvil dev ready", "cold_start", took.Round(time.Millisecond).String(), "directory", baseURL+"/directory", "state", dir)
		where := dir + " (removed at exit)"
		if !temporary || o.keep {
			where = dir + " (kept)"
		}
		fmt.Printf("anvil dev ready in %s\n  ACME directory: %s/directory\n  trust anchor:   curl -s %s/roots/0 > anvil-root.pem\n  state:          %s\n",
			took.Round(time.Millisecond), baseURL, mgmt, where)
	}
	return srv.run(ctx)
}

// devState is the state directory of `anvil dev`:
//
//	softhsm/   softhsm2.conf, tokens/, LABEL.pin and LABEL.sopin (0600)
//	ceremonies/ the ceremony files as run, and a .done marker per ceremony
//	pki/       certificates, CRL, transcripts, the server's TLS certificate
//	anvil.db   the SQLite database
type devState struct {
	dir    string
	opts   *devOptions
	log    *slog.Logger
	module string
}

func (s *devState) path(rel string) string { return filepath.Join(s.dir, filepath.FromSlash(rel)) }

// tokens makes the two tokens on the first start and points this process's
// SoftHSM2 at them (the module reads SOFTHSM2_CONF when it is loaded, which
// is later). A token whose PIN file exists was made by an earlier start.
func (s *devState) tokens() error {
	d, err := softhsmtest.NewPrivateDir(s.path("softhsm"))
	if err != nil {
		return fmt.Errorf("SoftHSM2: %w (set SOFTHSM2_MODULE to the path of libsofthsm2.so if it is elsewhere)", err)
	}
	s.module = d.ModulePath
	if err := os.Setenv("SOFTHSM2_CONF", d.ConfPath); err != nil {
		return err
	}
	for _, label := range devTokens {
		if _, err := os.Stat(filepath.Join(d.Path, label+".pin")); err == nil {
			continue
		}
		if _, err := d.InitTokenPKCS11(label); err != nil {
			return fmt.Errorf("%w (state directory %s: remove it to start over)", err, s.dir)
		}
		s.log.Debug("SoftHSM2 token made", "label", label)
	}
	return nil
}

// hierarchy runs each dev ceremony that has not run in this state directory.
func (s *devState) hierarchy(ctx context.Context, pkiURL string) error {
	if err := os.MkdirAll(s.path("ceremonies"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(s.path("pki"), 0o755); err != nil {
		return err
	}
	suffix, err := s.nameSuffix()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	data := map[string]any{
		"Module": s.module, "PKIURL": pkiURL, "Suffix": suffix,
		"Today": today.Format(time.RFC3339), "Now": now.Truncate(time.Second).Format(time.RFC3339),
		"In20Years": today.AddDate(20, 0, 0).Format(time.RFC3339), "In5Years": today.AddDate(5, 0, 0).Format(time.RFC3339),
		"In30Days": now.Truncate(time.Second).AddDate(0, 0, 30).Format(time.RFC3339),
	}
	for _, c := range devCeremonies {
		if c.rsa && !s.opts.rsa {
			continue
		}
		done := s.path("ceremonies/" + c.file + ".done")
		if _, err := os.Stat(done); err == nil {
			continue
		}
		out, err := s.render("devconfigs/ceremonies/"+c.file, data)
		if err != nil {
			return err
		}
		file := s.path("ceremonies/" + c.file)
		if err := os.WriteFile(file, out, 0o600); err != nil {
			return err
		}
		var transcript bytes.Buffer
		if err := ceremony.Run(ctx, file, ceremony.Options{Out: &transcript, Version: version}); err != nil {
			return fmt.Errorf("dev ceremony %s: %w (state directory %s: remove it to start over)", c.file, err, s.dir)
		}
		if err := os.WriteFile(done, nil, 0o600); err != nil {
			return err
		}
		s.log.Debug("dev ceremony done", "ceremony", c.file)
	}
	return nil
}

// nameSuffix is a random tag in the CA names, made once per state directory,
// so that the roots of two throwaway CAs are told apart (as Pebble does).
func (s *devState) nameSuffix() (string, error) {
	p := s.path("name-suffix")
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 3)
	rand.Read(b)
	tag := hex.EncodeToString(b)
	return tag, os.WriteFile(p, []byte(tag+"\n"), 0o600)
}

// render fills one embedded template: q quotes a string for YAML (a JSON
// string is a YAML double-quoted scalar), path quotes a path under the state
// directory.
func (s *devState) render(name string, data any) ([]byte, error) {
	src, err := devConfigs.ReadFile(name)
	if err != nil {
		return nil, err
	}
	q := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	t, err := template.New(filepath.Base(name)).Option("missingkey=error").Funcs(template.FuncMap{
		"q":    q,
		"path": func(rel string) string { return q(s.path(rel)) },
	}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("built-in %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("built-in %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// serveConfig renders the built-in serve configuration and decodes it as
// strictly as `anvil serve` decodes its file.
func (s *devState) serveConfig(baseURL, pkiURL string, resolvers []string) (*serveConfig, error) {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h := s.opts.host; h != "localhost" && h != "127.0.0.1" && h != "::1" {
		names = append(names, h)
	}
	out, err := s.render("devconfigs/serve.yaml", map[string]any{
		"Listen": s.opts.listen, "BaseURL": baseURL, "ManagementListen": s.opts.management,
		"ServerNames": names, "Module": s.module, "PKIURL": pkiURL, "RSA": s.opts.rsa,
		"HTTPPort": s.opts.httpPort, "TLSPort": s.opts.tlsPort, "Resolvers": resolvers,
		"LogFormat": s.opts.logFormat, "LogLevel": s.opts.logLevel,
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.path("serve.yaml"), out, 0o600); err != nil {
		return nil, err
	}
	var cfg serveConfig
	if err := config.Decode(out, &cfg); err != nil {
		return nil, fmt.Errorf("built-in serve configuration (written to %s): %w", s.path("serve.yaml"), err)
	}
	return &cfg, nil
}

// lockDevDir keeps a second `anvil dev` off a state directory while the
// first is making tokens or running ceremonies in it (the SQLite lock that
// `anvil serve` takes comes only later). The lock goes with the process.
func lockDevDir(dir string) (func(), error) {
	name := filepath.Join(dir, "dev.lock")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another anvil dev is using the state directory %s (it holds %s)", dir, name)
		}
		return nil, fmt.Errorf("state directory lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// processStart is when this process started, from /proc on Linux (so that
// the cold start counts the program's loading and initialisation), or now.
func processStart() time.Time {
	now := time.Now()
	stat, err1 := os.ReadFile("/proc/self/stat")
	up, err2 := os.ReadFile("/proc/uptime")
	if err1 != nil || err2 != nil {
		return now
	}
	// Field 22 (starttime, in clock ticks since boot) comes after the
	// command name in parentheses, which may hold spaces.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 20 {
		return now
	}
	ticks, err := strconv.ParseFloat(f[19], 64)
	upf := strings.Fields(string(up))
	if err != nil || len(upf) == 0 {
		return now
	}
	uptime, err := strconv.ParseFloat(upf[0], 64)
	if err != nil {
		return now
	}
	const clkTck = 100 // USER_HZ on every Linux platform Go supports
	age := time.Duration((uptime - ticks/clkTck) * float64(time.Second))
	if age < 0 || age > time.Minute {
		return now
	}
	return now.Add(-age)
}
