package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/anvil-pki/anvil/audit"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/storage"
)

// anvil admin status and anvil admin crl regenerate.
//
// Neither opens the HSM. The running server holds the token's sessions and,
// on a real HSM, a second process logging in competes for a small session
// budget and, with a wrong PIN file, counts towards the token's lockout. The
// token's state is what the server's own /health says (each token's state
// as its last calls left it, without a call into the module); everything else is in the configuration and the
// database.

// certExpiry is one certificate of the configuration and its expiry.
type certExpiry struct {
	File     string    `json:"file"`
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft int       `json:"days_left"`
	Error    string    `json:"error,omitempty"`
}

// issuerStatus is one configured issuer.
type issuerStatus struct {
	Name        string       `json:"name"`
	Key         string       `json:"key"`
	Certificate certExpiry   `json:"certificate"`
	Chain       []certExpiry `json:"chain,omitempty"`
	CRL         *crlStatus   `json:"crl"`
}

// crlStatus is the stored CRL of an issuer.
type crlStatus struct {
	Number      int64     `json:"number,omitempty"`
	ThisUpdate  time.Time `json:"this_update,omitzero"`
	NextUpdate  time.Time `json:"next_update,omitzero"`
	Requested   time.Time `json:"requested,omitzero"` // an operator's request not yet served
	Published   bool      `json:"published"`
	SecondsLeft int64     `json:"seconds_until_next_update,omitempty"`
	// With crl_shards > 1 the fields above are the shard whose nextUpdate
	// comes first: the one an operator must watch.
	Shards int `json:"shards,omitempty"`
	Shard  int `json:"shard,omitempty"`
}

// hsmStatus is what the server's /health said.
type hsmStatus struct {
	URL    string `json:"url,omitempty"`
	State  string `json:"state"` // ok, down, unreachable, unknown
	Detail string `json:"detail,omitempty"`
}

type statusReport struct {
	Time    time.Time       `json:"time"`
	Issuers []issuerStatus  `json:"issuers"`
	HSM     hsmStatus       `json:"hsm"`
	Counts  *storage.Counts `json:"counts"`
}

func readCertExpiry(path string, now time.Time) certExpiry {
	e := certExpiry{File: path}
	b, err := os.ReadFile(path)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		der = blk.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		e.Error = fmt.Sprintf("not a certificate: %v", err)
		return e
	}
	e.Subject, e.NotAfter = c.Subject.String(), c.NotAfter.UTC()
	e.DaysLeft = int(c.NotAfter.Sub(now).Hours() / 24)
	return e
}

// crlState reads the issuer's stored CRL and any pending request.
func (s *adminSession) crlState(ctx context.Context, issuer string) (*crlStatus, error) {
	st := &crlStatus{}
	heads, err := s.store.CRLHeads(ctx, issuer)
	if err != nil {
		return nil, err
	}
	var oldestThis time.Time // a request is served once every shard is newer
	for i, h := range heads {
		if i == 0 || h.NextUpdate.Before(st.NextUpdate) {
			st.Number, st.ThisUpdate, st.NextUpdate, st.Shard = h.Number, h.ThisUpdate, h.NextUpdate, h.Shard
		}
		if i == 0 || h.ThisUpdate.Before(oldestThis) {
			oldestThis = h.ThisUpdate
		}
	}
	if len(heads) > 0 {
		st.Published, st.SecondsLeft = true, int64(st.NextUpdate.Sub(s.now).Seconds())
	}
	if len(heads) > 1 {
		st.Shards = len(heads)
	}
	req, err := s.admin.CRLRequested(ctx, issuer)
	if err != nil {
		return nil, err
	}
	if !req.IsZero() && (!st.Published || req.After(oldestThis)) {
		st.Requested = req
	}
	return st, nil
}

// checkHealth asks the running server's admin listener for /health.
func checkHealth(url string) hsmStatus {
	if url == "" {
		return hsmStatus{State: "unknown", Detail: "no admin_listen in the configuration and no --health-url: ask the process that holds the HSM"}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return hsmStatus{URL: url, State: "unreachable", Detail: fmt.Sprintf("%v (is the server running?)", err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	detail := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusOK {
		return hsmStatus{URL: url, State: "ok", Detail: "every token signed a test digest"}
	}
	return hsmStatus{URL: url, State: "down", Detail: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, detail)}
}

func adminStatus(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("status")
	healthURL := fs.String("health-url", "", "the /health URL of the process that holds the HSM (default: http://ADMIN_LISTEN/health of this configuration)")
	s, err := parseAndOpen(fs, args, cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	rep := statusReport{Time: s.now, Issuers: []issuerStatus{}}
	for _, ic := range s.cfg.Issuers {
		is := issuerStatus{Name: ic.Name, Key: ic.Key, Certificate: readCertExpiry(ic.Certificate, s.now)}
		for _, c := range ic.Chain {
			is.Chain = append(is.Chain, readCertExpiry(c, s.now))
		}
		if is.CRL, err = s.crlState(ctx, ic.Name); err != nil {
			return err
		}
		rep.Issuers = append(rep.Issuers, is)
	}
	url := *healthURL
	if url == "" && s.cfg.AdminListen != "" {
		url = "http://" + s.cfg.AdminListen + "/health"
	}
	rep.HSM = checkHealth(url)
	if rep.Counts, err = s.admin.Counts(ctx, s.now); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(out, rep)
	}
	printStatus(out, &rep, s.cfg.Signer != nil)
	return nil
}

func printStatus(out io.Writer, rep *statusReport, frontEnd bool) {
	fmt.Fprintf(out, "status at %s\n\nissuers\n", rep.Time.Format(time.RFC3339))
	if len(rep.Issuers) == 0 {
		if frontEnd {
			fmt.Fprintln(out, "  none here: this front end sends issuance to a signer; run status with the signer's database and --health-url")
		} else {
			fmt.Fprintln(out, "  none configured")
		}
	}
	line := func(indent string, e certExpiry) {
		if e.Error != "" {
			fmt.Fprintf(out, "%s%s: ERROR: %s\n", indent, e.File, e.Error)
			return
		}
		warn := ""
		if e.DaysLeft < 30 {
			warn = "  <-- under 30 days"
		}
		fmt.Fprintf(out, "%s%s\n%s expires %s (%d days)%s\n", indent, e.Subject, strings.Repeat(" ", len(indent)), e.NotAfter.Format(time.RFC3339), e.DaysLeft, warn)
	}
	for _, is := range rep.Issuers {
		fmt.Fprintf(out, "  %s  (key %s)\n", is.Name, is.Key)
		line("    certificate: ", is.Certificate)
		for _, c := range is.Chain {
			line("    chain: ", c)
		}
		switch c := is.CRL; {
		case !c.Published:
			fmt.Fprintf(out, "    CRL: none published yet\n")
		case c.Shards > 1:
			fmt.Fprintf(out, "    CRL: %d shards; the first to reach nextUpdate is shard %d: number %d, thisUpdate %s, nextUpdate %s (in %s)\n", c.Shards, c.Shard, c.Number,
				c.ThisUpdate.Format(time.RFC3339), c.NextUpdate.Format(time.RFC3339), time.Duration(c.SecondsLeft)*time.Second)
		default:
			fmt.Fprintf(out, "    CRL: number %d, thisUpdate %s, nextUpdate %s (in %s)\n", c.Number,
				c.ThisUpdate.Format(time.RFC3339), c.NextUpdate.Format(time.RFC3339), time.Duration(c.SecondsLeft)*time.Second)
		}
		if !is.CRL.Requested.IsZero() {
			fmt.Fprintf(out, "    CRL: regeneration requested at %s, not yet served\n", is.CRL.Requested.Format(time.RFC3339))
		}
	}
	fmt.Fprintf(out, "\nhsm: %s", rep.HSM.State)
	if rep.HSM.URL != "" {
		fmt.Fprintf(out, " (GET %s)", rep.HSM.URL)
	}
	fmt.Fprintf(out, "\n  %s\n\ncounts\n", rep.HSM.Detail)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, g := range []struct {
		name string
		m    map[string]int
	}{{"accounts", rep.Counts.Accounts}, {"orders", rep.Counts.Orders}, {"certificates", rep.Counts.Certificates}} {
		fmt.Fprintf(w, "  %s\t%s\n", g.name, formatCounts(g.m))
	}
	w.Flush()
}

// formatCounts writes a count map in a fixed order: known states first.
func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	order := []string{"valid", "pending", "processing", "invalid", "deactivated", "revoked", "expired", "intent", "reserved"}
	var parts []string
	seen := map[string]bool{}
	for _, k := range order {
		if n, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
			seen[k] = true
		}
	}
	for k, n := range m {
		if !seen[k] {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	return strings.Join(parts, ", ")
}

// adminCRLRegenerate records a CRL request for each issuer. The node that
// holds the issuer's CRL lease (a running anvil serve or signer) makes the
// new CRL at its next check, with the HSM session it already has, under
// the same lease and CRL numbering as every other CRL: no second process
// signs, and two CRLs can never race for one number.
func adminCRLRegenerate(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("crl regenerate")
	var names multiFlag
	fs.Var(&names, "issuer", "issuer name (repeatable; default: every issuer in the configuration)")
	wait := fs.String("wait", "", "wait this long (e.g. 1m) for the new CRLs to be stored, and fail if they are not")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var waitFor time.Duration
	if *wait != "" {
		d, err := config.ParseDuration(*wait)
		if err != nil {
			return fmt.Errorf("--wait: %w", err)
		}
		waitFor = d
	}
	s, err := openAdminSession(*cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	known := map[string]bool{}
	for _, ic := range s.cfg.Issuers {
		known[ic.Name] = true
	}
	if len(names) == 0 {
		for _, ic := range s.cfg.Issuers {
			names = append(names, ic.Name)
		}
	}
	if len(names) == 0 {
		return errors.New("no issuers in this configuration: name them with --issuer")
	}
	before := map[string]map[int]int64{} // each shard's CRL number before the request
	for _, n := range names {
		heads, err := s.store.CRLHeads(ctx, n)
		if err != nil {
			return err
		}
		// A front end's configuration names no issuers: accept one that has
		// published a CRL, so that a typo does not leave a request nobody serves.
		if !known[n] && len(heads) == 0 {
			return fmt.Errorf("--issuer %q: not in the configuration and no CRL of it is stored", n)
		}
		before[n] = map[int]int64{}
		for _, h := range heads {
			before[n][h.Shard] = h.Number
		}
	}
	for _, n := range names {
		if err := s.admin.RequestCRL(ctx, n, s.now); err != nil {
			return err
		}
	}
	if err := recordAdmin(*cfgPath, audit.AdminCommand, "crl regenerate", map[string]any{"issuers": []string(names)}); err != nil {
		return err
	}
	if waitFor > 0 {
		if err := s.waitForCRLs(ctx, names, before, waitFor); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(out, map[string]any{"issuers": []string(names), "requested": s.now, "served": waitFor > 0})
	}
	if waitFor > 0 {
		fmt.Fprintf(out, "new CRLs of %s are stored (requested at %s); anvil admin status shows them\n", strings.Join(names, ", "), s.now.Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(out, "requested a new CRL of %s at %s.\nThe node publishing each CRL makes it at its next check (pki.crl_check_interval, 15s by default);\n"+
		"`anvil admin status` shows the request until a CRL with a later thisUpdate is stored.\n", strings.Join(names, ", "), s.now.Format(time.RFC3339))
	return nil
}

// waitForCRLs polls the database until each shard of each issuer has a CRL newer than the
// one it had before the request (before) and made since the request (a CRL's
// thisUpdate is its signing time in whole seconds, so the request's second
// counts), or d has passed.
func (s *adminSession) waitForCRLs(ctx context.Context, issuers []string, before map[string]map[int]int64, d time.Duration) error {
	deadline := time.Now().Add(d)
	since := s.now.Truncate(time.Second)
	for {
		var pending []string
		for _, n := range issuers {
			heads, err := s.store.CRLHeads(ctx, n)
			if err != nil {
				return err
			}
			// Every shard is regenerated on a request, the ones stored
			// before it included.
			served := len(heads) > 0 && len(heads) >= len(before[n])
			for _, h := range heads {
				if h.Number <= before[n][h.Shard] || h.ThisUpdate.Before(since) {
					served = false
				}
			}
			if !served {
				pending = append(pending, n)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no new CRL of %s within %s: the request stays recorded; is the process that publishes it running? (anvil admin status)",
				strings.Join(pending, ", "), d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
