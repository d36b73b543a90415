package validation

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/miekg/dns"
)

// A token and key authorization of the shape the acme package computes.
const (
	testToken   = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
	testKeyAuth = testToken + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
)

// testDNS is an authoritative-and-recursive stand-in on 127.0.0.1, UDP and TCP
// on the same port, answering from records the test controls. It does not
// chase CNAMEs: asked for a type a name lacks, it returns the name's CNAME
// alone, so the validator's own CNAME following is what gets tested.
type testDNS struct {
	addr string

	mu       sync.Mutex
	records  map[dnsKey][]dns.RR
	owners   map[string]bool
	rcodes   map[string]int      // name → rcode for every question about it
	truncate map[string]bool     // names whose UDP answers come back truncated
	raw      map[dnsKey][]dns.RR // exact answer sections, as a chasing resolver would send
	queries  atomic.Int64
}

type dnsKey struct {
	name  string
	qtype uint16
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{
		records:  map[dnsKey][]dns.RR{},
		owners:   map[string]bool{},
		rcodes:   map[string]int{},
		truncate: map[string]bool{},
		raw:      map[dnsKey][]dns.RR{},
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // find a port free for both UDP and TCP
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for UDP and TCP: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: ln, Handler: d, NotifyStartedFunc: started.Done}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	started.Wait()
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return d
}

// add adds records in zone-file syntax, e.g. `example.test. A 127.0.0.1`.
func (d *testDNS) add(t *testing.T, lines ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		h := rr.Header()
		name := strings.ToLower(h.Name)
		k := dnsKey{name, h.Rrtype}
		d.records[k] = append(d.records[k], rr)
		d.owners[name] = true
	}
}

// setAnswer makes the answer section for (name, qtype) exactly lines.
func (d *testDNS) setAnswer(t *testing.T, name string, qtype uint16, lines ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	k := dnsKey{dns.Fqdn(strings.ToLower(name)), qtype}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		d.raw[k] = append(d.raw[k], rr)
	}
}

func (d *testDNS) setRcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rcodes[dns.Fqdn(strings.ToLower(name))] = rcode
}

func (d *testDNS) setTruncate(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.truncate[dns.Fqdn(strings.ToLower(name))] = true
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	defer func() {
		// As a real server does: an answer too big for the client's UDP
		// buffer is truncated, and the client must ask again over TCP.
		if udp {
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	}()
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if rc, ok := d.rcodes[name]; ok {
		m.Rcode = rc
		return
	}
	if udp && d.truncate[name] {
		m.Truncated = true
		return
	}
	switch {
	case d.raw[dnsKey{name, q.Qtype}] != nil:
		m.Answer = d.raw[dnsKey{name, q.Qtype}]
	case len(d.records[dnsKey{name, q.Qtype}]) > 0:
		m.Answer = d.records[dnsKey{name, q.Qtype}]
	case len(d.records[dnsKey{name, dns.TypeCNAME}]) > 0:
		m.Answer = d.records[dnsKey{name, dns.TypeCNAME}]
	case !d.owners[name]:
		m.Rcode = dns.RcodeNameError
	}
}

// newTestValidator makes a Validator that asks d and may connect to loopback,
// then lets edit change the configuration.
func newTestValidator(t *testing.T, d *testDNS, edit func(*Config)) *Validator {
	t.Helper()
	cfg := Config{
		Resolvers:           []string{d.addr},
		AllowPrivateTargets: true,
		CAAIdentities:       []string{"anvil.example"},
		Timeout:             config.Duration{Duration: 10 * time.Second},
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// portOf returns the port of a "host:port" or URL.
func portOf(t *testing.T, s string) int {
	t.Helper()
	s = s[strings.LastIndex(s, ":")+1:]
	p, err := strconv.Atoi(strings.TrimRight(s, "/"))
	if err != nil {
		t.Fatalf("no port in %q", s)
	}
	return p
}

// closedPort returns a port on 127.0.0.1 on which nothing listens (TCP and UDP).
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// wantProblem asserts err is a *Problem of type typ whose detail contains each
// phrase (case-insensitively) and no trace of Go error text.
func wantProblem(t *testing.T, err error, typ string, phrases ...string) *Problem {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("got %v (%T), want a *Problem of type %s", err, err, typ)
	}
	if p.Type != typ {
		t.Fatalf("problem type %q, want %q; detail: %s", p.Type, typ, p.Detail)
	}
	t.Logf("%s: %s", p.Type, p.Detail)
	for _, phrase := range phrases {
		if !strings.Contains(strings.ToLower(p.Detail), strings.ToLower(phrase)) {
			t.Errorf("detail %q does not contain %q", p.Detail, phrase)
		}
	}
	for _, internal := range []string{"dial tcp", "read udp", "write udp", "read tcp", "net/http", "context deadline", "%!"} {
		if strings.Contains(p.Detail, internal) {
			t.Errorf("detail %q leaks internal error text %q", p.Detail, internal)
		}
	}
	return p
}

func wantOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			t.Fatalf("got problem %s: %s (cause: %v)", p.Type, p.Detail, p.Err)
		}
		t.Fatalf("got %v", err)
	}
}

func dnsIdent(name string) Identifier { return Identifier{Type: IdentifierDNS, Value: name} }

func ipIdent(ip string) Identifier { return Identifier{Type: IdentifierIP, Value: ip} }

var bg = context.Background()

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func itoa(n int) string { return strconv.Itoa(n) }
