package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/storage"
)

// The operator's searches and bulk actions: cert list, account list and
// deactivate, order list, revoke-all. Each reads the serve configuration for
// its database only, prints a table for a person, or JSON with --json.

// adminSession is an open serve configuration and its database.
type adminSession struct {
	cfg   *serveConfig
	store storage.Store
	admin storage.Admin
	now   time.Time
}

// adminFlagSet returns a flag set with the flags every command here takes.
func adminFlagSet(name string) (fs *flag.FlagSet, cfgPath *string, asJSON *bool) {
	fs = flag.NewFlagSet("admin "+name, flag.ContinueOnError)
	cfgPath = fs.String("config", "", "serve or signer YAML file (its database is used)")
	asJSON = fs.Bool("json", false, "print JSON instead of a table")
	return fs, cfgPath, asJSON
}

// openAdminSession loads the serve configuration and opens its database.
func openAdminSession(path string) (*adminSession, error) {
	if path == "" {
		return nil, errors.New("--config is required")
	}
	var cfg serveConfig
	if err := config.Load(path, &cfg); err != nil {
		// The signer's configuration names the same database and the
		// issuers, and its admin listener is where the HSM's health is.
		var sc signerConfig
		if config.Load(path, &sc) != nil {
			return nil, err
		}
		cfg = serveConfig{AdminListen: sc.AdminListen, caConfig: sc.caConfig}
	}
	store, err := openStore(context.Background(), cfg.Database)
	if err != nil {
		return nil, err
	}
	a, ok := store.(storage.Admin)
	if !ok {
		store.Close()
		return nil, fmt.Errorf("database driver %q has no operator queries", cfg.Database.Driver)
	}
	return &adminSession{cfg: &cfg, store: store, admin: a, now: time.Now().UTC()}, nil
}

func (s *adminSession) Close() { s.store.Close() }

// parseAndOpen parses a command's flags, then opens the configuration that
// --config (bound to cfgPath in fs) names. For commands with no flag to
// check in between.
func parseAndOpen(fs *flag.FlagSet, args []string, cfgPath *string) (*adminSession, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return openAdminSession(*cfgPath)
}

// limitFlag is the --limit of the list commands.
func limitFlag(fs *flag.FlagSet, limit *int) {
	fs.IntVar(limit, "limit", 100, "at most this many, newest first (0: all)")
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// timeFlag is a time given as RFC 3339 ("2027-01-31T00:00:00Z"), as a date
// ("2027-01-31", midnight UTC), or as a duration from now ("30d", "12h").
type timeFlag struct {
	t   time.Time
	now *time.Time
}

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(v string) error {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		f.t = t.UTC()
		return nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		f.t = t.UTC()
		return nil
	}
	d, err := config.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q: want an RFC 3339 time, a date (2027-01-31) or a duration from now (30d)", v)
	}
	f.t = f.now.Add(d)
	return nil
}

// certRow is one certificate as cert list shows it.
type certRow struct {
	Serial    string    `json:"serial"`
	Status    string    `json:"status"`
	Issuer    string    `json:"issuer"`
	Profile   string    `json:"profile"`
	OrderID   string    `json:"order,omitempty"`
	AccountID string    `json:"account,omitempty"`
	Names     []string  `json:"names"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// certStatus names a ledger entry's state, as Counts does.
func certStatus(c *storage.Certificate, now time.Time) string {
	switch {
	case c.DER == nil && c.LintDER == nil:
		return "reserved"
	case c.DER == nil:
		return "intent"
	case !c.Expires.After(now):
		return "expired"
	case !c.RevokedAt.IsZero():
		return "revoked"
	}
	return "valid"
}

// certRows describes certificates with their names (from the certificate,
// else from its order) and accounts (from the order, while it is kept).
func (s *adminSession) certRows(ctx context.Context, certs []*storage.Certificate) []certRow {
	orders := map[string]*storage.Order{}
	rows := make([]certRow, 0, len(certs))
	for _, c := range certs {
		r := certRow{Serial: c.Serial, Status: certStatus(c, s.now), Issuer: c.Issuer, Profile: c.Profile,
			OrderID: c.OrderID, Created: c.CreatedAt, Expires: c.Expires, RevokedAt: c.RevokedAt, Names: []string{}}
		if !c.RevokedAt.IsZero() {
			r.Reason = acme.ReasonName(c.Reason)
		}
		o, seen := orders[c.OrderID]
		if !seen && c.OrderID != "" {
			o, _ = s.store.GetOrder(ctx, c.OrderID) // gone once expired: the row says less
			orders[c.OrderID] = o
		}
		if o != nil {
			r.AccountID = o.AccountID
		}
		der := c.DER
		if der == nil {
			der = c.LintDER
		}
		if cert, err := x509.ParseCertificate(der); err == nil {
			r.Names = append(r.Names, cert.DNSNames...)
			for _, ip := range cert.IPAddresses {
				r.Names = append(r.Names, ip.String())
			}
		} else if o != nil {
			for _, id := range o.Identifiers {
				r.Names = append(r.Names, id.Value)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func printCertRows(out io.Writer, rows []certRow) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERIAL\tSTATUS\tISSUER\tPROFILE\tACCOUNT\tEXPIRES\tNAMES")
	for _, r := range rows {
		status := r.Status
		if r.Reason != "" {
			status += " (" + r.Reason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Serial, status, r.Issuer, r.Profile, dash(r.AccountID),
			r.Expires.Format(time.RFC3339), strings.Join(r.Names, ","))
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func adminCertList(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("cert list")
	now := time.Now().UTC()
	var f storage.CertificateFilter
	serial := fs.String("serial", "", "serial number in hex")
	fs.StringVar(&f.AccountID, "account", "", "account ID")
	fs.StringVar(&f.Name, "name", "", "a DNS name or IP address the certificate was ordered for (exact; *.example.com for a wildcard)")
	fs.StringVar(&f.Issuer, "issuer", "", "issuer name")
	after, before := &timeFlag{now: &now}, &timeFlag{now: &now}
	fs.Var(after, "expires-after", "expiring after this time (RFC 3339, a date, or a duration from now)")
	fs.Var(before, "expires-before", "expiring at or before this time (RFC 3339, a date, or a duration from now)")
	within := fs.String("expires-within", "", "unexpired and expiring within this duration from now (e.g. 30d)")
	limitFlag(fs, &f.Limit)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serial != "" {
		if f.Serial = normalizeSerial(*serial); f.Serial == "" {
			return fmt.Errorf("--serial %q is not hex", *serial)
		}
	}
	f.ExpiresAfter, f.ExpiresBefore = after.t, before.t
	if *within != "" {
		d, err := config.ParseDuration(*within)
		if err != nil {
			return fmt.Errorf("--expires-within: %w", err)
		}
		f.ExpiresAfter, f.ExpiresBefore = now, now.Add(d)
	}
	s, err := openAdminSession(*cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	s.now = now
	ctx := context.Background()
	certs, err := s.admin.ListCertificates(ctx, f)
	if err != nil {
		return err
	}
	rows := s.certRows(ctx, certs)
	if *asJSON {
		return writeJSON(out, rows)
	}
	return printCertRows(out, rows)
}

// accountRow is one account as account list shows it.
type accountRow struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Contact   []string  `json:"contact"`
	KeyID     string    `json:"key_thumbprint"`
	EABKeyID  string    `json:"eab_key_id,omitempty"`
	CreatedIP string    `json:"created_ip"`
	Created   time.Time `json:"created"`
}

func adminAccountList(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("account list")
	var f storage.AccountFilter
	fs.StringVar(&f.ID, "id", "", "account ID")
	fs.StringVar(&f.Contact, "contact", "", "a contact URI, exact (mailto:ops@example.com)")
	fs.StringVar(&f.Status, "status", "", "valid, deactivated or revoked")
	limitFlag(fs, &f.Limit)
	s, err := parseAndOpen(fs, args, cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	accts, err := s.admin.ListAccounts(context.Background(), f)
	if err != nil {
		return err
	}
	rows := make([]accountRow, 0, len(accts))
	for _, a := range accts {
		rows = append(rows, accountRow{ID: a.ID, Status: a.Status, Contact: append([]string{}, a.Contact...), KeyID: a.KeyID,
			EABKeyID: a.EABKeyID, CreatedIP: a.CreatedIP, Created: a.CreatedAt})
	}
	if *asJSON {
		return writeJSON(out, rows)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tSTATUS\tCREATED\tCREATED FROM\tEAB KEY\tCONTACT")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.Created.Format(time.RFC3339), r.CreatedIP, dash(r.EABKeyID), strings.Join(r.Contact, ","))
	}
	return w.Flush()
}

// orderRow is one order as order list shows it.
type orderRow struct {
	ID         string    `json:"id"`
	AccountID  string    `json:"account"`
	Status     string    `json:"status"`
	Names      []string  `json:"names"`
	Profile    string    `json:"profile,omitempty"`
	CertSerial string    `json:"certificate,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
}

func adminOrderList(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("order list")
	var f storage.OrderFilter
	fs.StringVar(&f.AccountID, "account", "", "account ID")
	fs.StringVar(&f.Name, "name", "", "an identifier of the order, exact")
	fs.StringVar(&f.Status, "status", "", "pending, processing, valid or invalid (as stored: a ready order is stored pending)")
	limitFlag(fs, &f.Limit)
	s, err := parseAndOpen(fs, args, cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	orders, err := s.admin.ListOrders(context.Background(), f)
	if err != nil {
		return err
	}
	rows := make([]orderRow, 0, len(orders))
	for _, o := range orders {
		r := orderRow{ID: o.ID, AccountID: o.AccountID, Status: o.Status, Profile: o.Profile, CertSerial: o.CertSerial,
			Created: o.CreatedAt, Expires: o.Expires, Names: []string{}}
		for _, id := range o.Identifiers {
			r.Names = append(r.Names, id.Value)
		}
		rows = append(rows, r)
	}
	if *asJSON {
		return writeJSON(out, rows)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ORDER\tACCOUNT\tSTATUS\tCERTIFICATE\tCREATED\tEXPIRES\tNAMES")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.AccountID, r.Status, dash(r.CertSerial),
			r.Created.Format(time.RFC3339), r.Expires.Format(time.RFC3339), strings.Join(r.Names, ","))
	}
	return w.Flush()
}

// adminAccountDeactivate moves an account to "revoked", the status RFC 8555
// (7.1.6) gives an account the server deactivated: every later request signed
// with its key is refused as unauthorized. Its certificates stay valid until
// revoked (revoke-all --account).
func adminAccountDeactivate(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("account deactivate")
	id := fs.String("id", "", "account ID")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("--id is required")
	}
	s, err := openAdminSession(*cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	// On SQLite the running server caches accounts in its memory and would
	// keep accepting the account: refuse while it runs (it holds the lock).
	if s.cfg.Database.Driver == "sqlite" {
		dsn, err := s.cfg.Database.resolvedDSN()
		if err != nil {
			return err
		}
		if err := prepareServeLock(dsn); err != nil {
			return err
		}
		release, err := lockSQLiteServe(dsn)
		if err != nil {
			return fmt.Errorf("%w\nanvil serve caches accounts on SQLite: stop it, deactivate the account, and start it again", err)
		}
		defer release()
	}
	ctx := context.Background()
	a, err := s.store.GetAccount(ctx, *id)
	if err != nil {
		return err
	}
	if a.Status != acme.StatusValid {
		return fmt.Errorf("account %s is %s already", a.ID, a.Status)
	}
	a.Status = acme.StatusRevoked
	if err := s.store.UpdateAccount(ctx, a, acme.StatusValid); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("account %s changed status meanwhile: look again with anvil admin account list --id %s", a.ID, a.ID)
		}
		return err
	}
	if err := recordAdmin(*cfgPath, audit.AccountDeactivated, "account deactivate", map[string]any{"account": a.ID, "by": "operator"}); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(out, map[string]string{"account": a.ID, "status": a.Status})
	}
	fmt.Fprintf(out, "account %s is now revoked (deactivated by the CA, RFC 8555 7.1.6): requests signed with its key are refused.\n"+
		"Its certificates stay valid; revoke them with: anvil admin revoke-all --config FILE --account %s --reason REASON\n", a.ID, a.ID)
	return nil
}

// revokeAllResult is what revoke-all did.
type revokeAllResult struct {
	Reason         string    `json:"reason"`
	DryRun         bool      `json:"dry_run,omitempty"`
	Revoked        []certRow `json:"revoked"`
	AlreadyRevoked []string  `json:"already_revoked"`
}

// adminRevokeAll revokes every unexpired, unrevoked certificate of an account
// or of a name. Each revocation is the same conditional update as a single
// one, so a run that stops half-way can simply be repeated.
func adminRevokeAll(args []string, out io.Writer) error {
	fs, cfgPath, asJSON := adminFlagSet("revoke-all")
	account := fs.String("account", "", "revoke every certificate ordered by this account")
	name := fs.String("name", "", "revoke every certificate ordered for this name (exact; *.example.com for a wildcard)")
	reason := fs.String("reason", "", "required: "+operatorReasons)
	dryRun := fs.Bool("dry-run", false, "list what would be revoked, revoke nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*account == "") == (*name == "") {
		return errors.New("give exactly one of --account and --name")
	}
	code, err := operatorReason(*reason)
	if err != nil {
		return err
	}
	s, err := openAdminSession(*cfgPath)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	certs, err := s.admin.ListCertificates(ctx, storage.CertificateFilter{AccountID: *account, Name: *name, ExpiresAfter: s.now, IssuedOnly: true})
	if err != nil {
		return err
	}
	res := revokeAllResult{Reason: acme.ReasonName(code), DryRun: *dryRun, Revoked: []certRow{}, AlreadyRevoked: []string{}}
	var todo []*storage.Certificate
	for _, c := range certs {
		if !c.RevokedAt.IsZero() {
			res.AlreadyRevoked = append(res.AlreadyRevoked, c.Serial)
			continue
		}
		todo = append(todo, c)
	}
	for _, c := range todo {
		if !*dryRun {
			if err := s.store.RevokeCertificate(ctx, c.Serial, time.Now().UTC(), code); err != nil {
				if errors.Is(err, storage.ErrConflict) { // revoked meanwhile by someone else
					res.AlreadyRevoked = append(res.AlreadyRevoked, c.Serial)
					continue
				}
				return fmt.Errorf("revoked %d certificates, then: %w (run the command again to finish)", len(res.Revoked), err)
			}
			c.RevokedAt, c.Reason = time.Now().UTC(), code
		}
		res.Revoked = append(res.Revoked, s.certRows(ctx, []*storage.Certificate{c})...)
	}
	if !*dryRun && len(res.Revoked) > 0 {
		serials := make([]string, len(res.Revoked))
		for i, r := range res.Revoked {
			serials[i] = r.Serial
		}
		if err := recordAdmin(*cfgPath, audit.CertRevoked, "revoke-all", map[string]any{
			"serials": serials, "reason": res.Reason, "by": "operator", "account": *account, "name": *name,
		}); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(out, res)
	}
	verb := "revoked"
	if *dryRun {
		verb = "would revoke"
	}
	fmt.Fprintf(out, "%s %d certificates (%s); %d were revoked already\n", verb, len(res.Revoked), res.Reason, len(res.AlreadyRevoked))
	if len(res.Revoked) > 0 {
		if err := printCertRows(out, res.Revoked); err != nil {
			return err
		}
	}
	if !*dryRun && len(res.Revoked) > 0 {
		fmt.Fprintln(out, "OCSP answers revoked at once; each issuer's CRL follows at the publisher's next check (pki.crl_check_interval).")
	}
	return nil
}

// adminQueryCommands are the admin commands of this file and its siblings,
// by their words ("cert list", "status").
var adminQueryCommands = map[string]func(args []string, out io.Writer) error{
	"cert list":          adminCertList,
	"account list":       adminAccountList,
	"account deactivate": adminAccountDeactivate,
	"order list":         adminOrderList,
	"revoke-all":         adminRevokeAll,
	"crl regenerate":     adminCRLRegenerate,
	"status":             adminStatus,
	"backup":             adminBackup,
}

// prepareServeLock makes the SQLite serve-lock file if no server made it yet,
// owned like the database: created by root running this command, it would
// otherwise keep the server (its own user) from ever taking the lock.
func prepareServeLock(dbPath string) error {
	name := dbPath + ".serve-lock"
	if _, err := os.Lstat(name); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil // there already, or lockSQLiteServe reports the problem
	}
	db, err := os.Stat(dbPath)
	if err != nil {
		return fmt.Errorf("database.dsn: %w", err)
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil // a server made it meanwhile
		}
		return fmt.Errorf("database.dsn: lock file: %w", err)
	}
	defer f.Close()
	if st, ok := db.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("database.dsn: lock file: %w", err)
		}
	}
	return nil
}
