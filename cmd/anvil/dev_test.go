package main

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/anvil-pki/anvil/ceremony"
	"github.com/anvil-pki/anvil/config"
)

// The built-in configurations of `anvil dev` render and decode as strictly
// as a serve.yaml, with and without --rsa and a resolver: a field renamed in
// code and not in devconfigs fails here, not in someone's pipeline.
func TestDevBuiltInConfigsDecode(t *testing.T) {
	for _, rsa := range []bool{false, true} {
		dir := t.TempDir()
		s := &devState{dir: dir, log: slog.Default(), module: "/usr/lib/softhsm/libsofthsm2.so", opts: &devOptions{
			listen: "127.0.0.1:14000", management: "127.0.0.1:15000", host: "anvil", httpPort: 5002, tlsPort: 5001,
			logFormat: "json", logLevel: "info", rsa: rsa,
		}}
		cfg, err := s.serveConfig("https://anvil:14000", "http://anvil:15000", []string{"127.0.0.1:8053"})
		if err != nil {
			t.Fatalf("rsa=%v: %v", rsa, err)
		}
		if got := len(cfg.Issuers); got != map[bool]int{false: 1, true: 2}[rsa] {
			t.Errorf("rsa=%v: %d issuers", rsa, got)
		}
		if cfg.knobs != (devKnobs{}) {
			t.Errorf("decoding set knobs: %+v", cfg.knobs)
		}
		if !strings.Contains(strings.Join(cfg.TLS.IssueFor, " "), "anvil") {
			t.Errorf("--host is not among the server's names: %v", cfg.TLS.IssueFor)
		}
		for _, c := range devCeremonies {
			out, err := s.render("devconfigs/ceremonies/"+c.file, map[string]any{
				"Module": s.module, "PKIURL": "http://anvil:15000", "Suffix": "abc123",
				"Today": "2026-01-01T00:00:00Z", "Now": "2026-01-01T10:00:00Z", "In20Years": "2046-01-01T00:00:00Z",
				"In5Years": "2031-01-01T00:00:00Z", "In30Days": "2026-01-31T10:00:00Z",
			})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.file)
			os.WriteFile(path, out, 0o600)
			if err := ceremony.Check(path); err != nil {
				t.Errorf("%s: %v", c.file, err)
			}
		}
	}
}

// No YAML key reaches a test knob: the knobs are an unexported field, and the
// strict decoder refuses every key it does not know, by name.
func TestServeConfigCannotCarryKnobs(t *testing.T) {
	base, err := os.ReadFile("../../configs/dev/serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"knobs: {nonceReject: 50}", "nonce_reject: 50", "nonceReject: 50", "authz_skip: 100", "authz_reuse: 0",
		"always_valid: true", "alwaysValid: true", "resolve_to: 127.0.0.1", "resolveTo: 127.0.0.1"} {
		var cfg serveConfig
		err := config.Decode(append(append([]byte{}, base...), []byte("\n"+key+"\n")...), &cfg)
		field, _, _ := strings.Cut(key, ":")
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%q: got %v, want a refusal naming %s", key, err, field)
		}
		if cfg.knobs != (devKnobs{}) {
			t.Errorf("%q set a knob: %+v", key, cfg.knobs)
		}
	}
}

// `anvil serve` refuses to start when a knob's environment variable is set,
// before it reads its configuration.
func TestServeRefusesKnobEnvironment(t *testing.T) {
	for _, name := range knobEnv {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "1")
			err := runServe([]string{"--config", "../../configs/dev/serve.yaml"})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("got %v, want a refusal naming %s", err, name)
			}
		})
	}
}

// The knobs read Pebble's variables, flags win over them, and bad values are
// refused with the knob named.
func TestDevKnobParsing(t *testing.T) {
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "30")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	var o devOptions
	fs := devFlags(&o)
	if err := fs.Parse([]string{"--nonce-reject", "40"}); err != nil {
		t.Fatal(err)
	}
	if err := envDefaults(fs); err != nil {
		t.Fatal(err)
	}
	k, err := o.knobs()
	if err != nil {
		t.Fatal(err)
	}
	if k.nonceReject != 40 || k.authzSkip != 100 || !k.alwaysValid || k.resolveTo.IsValid() {
		t.Errorf("knobs %+v", k)
	}
	if len(k.unsafe()) != 3 {
		t.Errorf("unsafe() = %q", k.unsafe())
	}
	for _, bad := range []devOptions{{nonceReject: "101"}, {authzReuse: "-1"}, {nonceReject: "half"}, {alwaysValid: "maybe"}, {resolveTo: "no such host"}, {resolveTo: "http://x"}} {
		if _, err := bad.knobs(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if k, err := (&devOptions{resolveTo: "host.docker.internal"}).knobs(); err != nil || k.resolveToName != "host.docker.internal" || len(k.unsafe()) != 1 {
		t.Errorf("resolve-to a host name: %+v %v", k, err)
	}
	if (devKnobs{}).unsafe() != nil {
		t.Errorf("the zero knobs are not all off")
	}
}

// The one-address DNS server answers every A question with its address, or
// with what its host name resolves to when it is asked; TXT finds nothing.
func TestOneAddressDNS(t *testing.T) {
	for _, tc := range []struct {
		addr netip.Addr
		name string
		want string
	}{
		{netip.MustParseAddr("192.0.2.7"), "", "192.0.2.7"},
		{netip.Addr{}, "localhost", "127.0.0.1"},
	} {
		d, server, err := startOneAddressDNS(tc.addr, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		for _, q := range []uint16{dns.TypeA, dns.TypeTXT} {
			m := new(dns.Msg)
			m.SetQuestion("anything.example.com.", q)
			r, err := dns.Exchange(m, server)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case q == dns.TypeA && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != tc.want):
				t.Errorf("%v %q: A answer %v, want %s", tc.addr, tc.name, r.Answer, tc.want)
			case q == dns.TypeTXT && (len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess):
				t.Errorf("TXT answer %v rcode %d", r.Answer, r.Rcode)
			}
		}
	}
}

// A second `anvil dev` on a state directory in use is refused with the
// directory named, instead of making tokens beside the first.
func TestDevDirLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDevDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDevDir(dir); err == nil || !strings.Contains(err.Error(), "another anvil dev") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	again, err := lockDevDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
}
