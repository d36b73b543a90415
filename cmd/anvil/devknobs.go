package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/api"
)

// devKnobs are the test knobs of `anvil dev`: behaviour that makes client bugs
// show, and that no CA may have in earnest. They live in an unexported field
// of serveConfig, which no YAML key can reach (the strict decoder refuses any
// key it does not know), and only runDev sets them; runServe also refuses to
// start when one of their environment variables is set, so that a pipeline
// that moved from `anvil dev` to `anvil serve` does not silently lose them.
type devKnobs struct {
	// nonceReject is the share (0-100) of valid nonces answered with badNonce,
	// as Pebble's PEBBLE_WFE_NONCEREJECT.
	nonceReject int
	// authzSkip is the share (0-100) of reusable authorizations that are not
	// reused: 100 minus Pebble's PEBBLE_AUTHZREUSE, so that the zero value is
	// the normal behaviour.
	authzSkip int
	// alwaysValid accepts every challenge without fetching anything, as
	// Pebble's PEBBLE_VA_ALWAYS_VALID.
	alwaysValid bool
	// resolveTo answers every A or AAAA question of validation with this one
	// address, as pebble-challtestsrv's -defaultIPv4/-defaultIPv6; or, with
	// resolveToName, with what that name resolves to on this machine at the
	// time of the question (a CI job container may not exist yet when the CA
	// starts).
	resolveTo     netip.Addr
	resolveToName string
}

// knobEnv are the environment variables of the knobs: Pebble's names where
// Pebble has the knob, so that a pipeline can switch by changing the image.
var knobEnv = []string{"PEBBLE_WFE_NONCEREJECT", "PEBBLE_AUTHZREUSE", "PEBBLE_VA_ALWAYS_VALID", "ANVIL_DEV_RESOLVE_TO"}

// refuseKnobEnv is what `anvil serve` says when a knob's variable is set.
func refuseKnobEnv() error {
	for _, name := range knobEnv {
		if _, ok := os.LookupEnv(name); ok {
			return fmt.Errorf("%s is set: it is a test knob of `anvil dev`, and `anvil serve` refuses every test knob (unset it)", name)
		}
	}
	return nil
}

// unsafe lists the knobs that are on, for the start-up warning.
func (k devKnobs) unsafe() []string {
	var out []string
	if k.nonceReject > 0 {
		out = append(out, fmt.Sprintf("nonce-reject=%d%% (PEBBLE_WFE_NONCEREJECT): that share of valid nonces is answered with badNonce", k.nonceReject))
	}
	if k.authzSkip > 0 {
		out = append(out, fmt.Sprintf("authz-reuse=%d%% (PEBBLE_AUTHZREUSE): valid authorizations are reused for only that share of new orders", 100-k.authzSkip))
	}
	if k.alwaysValid {
		out = append(out, "always-valid (PEBBLE_VA_ALWAYS_VALID): every challenge is valid without any request to the applicant")
	}
	if k.resolveTo.IsValid() {
		out = append(out, fmt.Sprintf("resolve-to=%s (ANVIL_DEV_RESOLVE_TO): validation resolves every name to this one address", k.resolveTo))
	}
	if k.resolveToName != "" {
		out = append(out, fmt.Sprintf("resolve-to=%s (ANVIL_DEV_RESOLVE_TO): validation resolves every name to the address of %s on this machine", k.resolveToName, k.resolveToName))
	}
	return out
}

// percent parses a knob's share, 0 to 100.
func percent(name, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%s: %q is not a percentage from 0 to 100", name, s)
	}
	return n, nil
}

// boolish parses a knob that is on or off, as Pebble reads its variables
// ("1" and "true" are on).
func boolish(name, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "", "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q: want 1 or 0", name, s)
}

// parseResolveTo takes an address, or a host name that the one-address DNS
// server looks up (through /etc/hosts and the system resolver) at each
// question: in a container, "host.docker.internal" given with
// --add-host=host.docker.internal:host-gateway is the runner.
func parseResolveTo(s string) (netip.Addr, string, error) {
	if s == "" {
		return netip.Addr{}, "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), "", nil
	}
	if _, ok := dns.IsDomainName(s); !ok || strings.ContainsAny(s, " /:") {
		return netip.Addr{}, "", fmt.Errorf("resolve-to: %q is neither an IP address nor a host name", s)
	}
	return netip.Addr{}, strings.TrimSuffix(s, "."), nil
}

// rejectingNonces answers a share of otherwise valid nonces with badNonce.
// The nonce is redeemed first, so that a client that retries with the same
// nonce is refused as a replay, as it would be after any badNonce.
type rejectingNonces struct {
	api.NonceSource
	percent int
}

func (r rejectingNonces) Redeem(ctx context.Context, nonce string) error {
	if err := r.NonceSource.Redeem(ctx, nonce); err != nil {
		return err
	}
	if rand.IntN(100) < r.percent {
		return acme.BadNonce("nonce rejected on purpose by the test knob PEBBLE_WFE_NONCEREJECT=%d: retry with the nonce of this response", r.percent)
	}
	return nil
}

// alwaysValid accepts every challenge and every CAA check without a request.
type alwaysValid struct{}

func (alwaysValid) Validate(context.Context, acme.Identifier, string, string, string) error {
	return nil
}

func (alwaysValid) CheckCAA(context.Context, string, bool, string, string) error { return nil }

// apply returns the nonce source, validator and reuse veto buildServer
// wires in, changed by the knobs that are on.
func (k devKnobs) apply(nonces api.NonceSource, v acme.Validator, logger *slog.Logger) (api.NonceSource, acme.Validator, func() bool) {
	for _, w := range k.unsafe() {
		logger.Warn("UNSAFE test knob on: never use this CA for anything but tests", "knob", w)
	}
	if k.nonceReject > 0 {
		nonces = rejectingNonces{NonceSource: nonces, percent: k.nonceReject}
	}
	if k.alwaysValid {
		v = alwaysValid{}
	}
	var skip func() bool
	if k.authzSkip > 0 {
		share := k.authzSkip
		skip = func() bool { return rand.IntN(100) < share }
	}
	return nonces, v, skip
}

// oneAddressDNS is a DNS server on loopback that answers every A or AAAA
// question with one address (an empty answer for the other family), and every
// other question with an empty NOERROR: no TXT (so dns-01 fails), no CAA.
type oneAddressDNS struct {
	addr netip.Addr
	name string // looked up at each question instead of addr, when set
	srv  *dns.Server
}

// startOneAddressDNS serves on a free UDP port of 127.0.0.1 and returns
// "127.0.0.1:port" for validation.resolvers.
func startOneAddressDNS(addr netip.Addr, name string) (*oneAddressDNS, string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("resolve-to DNS server: %w", err)
	}
	d := &oneAddressDNS{addr: addr, name: name}
	d.srv = &dns.Server{PacketConn: pc, Handler: d}
	started := make(chan error, 1)
	d.srv.NotifyStartedFunc = func() { started <- nil }
	go func() {
		if err := d.srv.ActivateAndServe(); err != nil {
			started <- err
		}
	}()
	if err := <-started; err != nil {
		return nil, "", fmt.Errorf("resolve-to DNS server: %w", err)
	}
	return d, pc.LocalAddr().String(), nil
}

func (d *oneAddressDNS) close() {
	if err := d.srv.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
		slog.Debug("resolve-to DNS server shutdown", "error", err)
	}
}

func (d *oneAddressDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	addr := d.addr
	if d.name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", d.name)
		cancel()
		if err != nil || len(ips) == 0 {
			slog.Warn("resolve-to: the name does not resolve", "name", d.name, "error", err)
			m.Rcode = dns.RcodeServerFailure
			w.WriteMsg(m)
			return
		}
		addr = ips[0].Unmap()
		for _, ip := range ips {
			if ip.Unmap().Is4() {
				addr = ip.Unmap()
				break
			}
		}
	}
	for _, q := range r.Question {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch {
		case q.Qtype == dns.TypeA && addr.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: addr.AsSlice()})
		case q.Qtype == dns.TypeAAAA && addr.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
		}
	}
	w.WriteMsg(m)
}
