package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/storage"
)

func init() {
	register("admin", "operator commands on the CA's records: eab, revoke, cert, account, order, crl, status, backup", runAdmin)
}

const adminUsage = `usage:
  anvil admin eab create --config serve.yaml [--alg HS256|HS384|HS512] [--comment TEXT] [--allow-suffix DOMAIN ...]
  anvil admin eab list   --config serve.yaml
  anvil admin eab revoke --config serve.yaml KEY-ID
  anvil admin revoke     --config serve.yaml --serial HEX [--reason keyCompromise]
  anvil admin cert show  --config serve.yaml --serial HEX
  anvil admin cert list  --config serve.yaml [--serial HEX] [--account ID] [--name NAME] [--issuer NAME]
                         [--expires-after T] [--expires-before T] [--expires-within 30d] [--limit N] [--json]
  anvil admin account list       --config serve.yaml [--id ID] [--contact URI] [--status S] [--limit N] [--json]
  anvil admin account deactivate --config serve.yaml --id ID
  anvil admin order list  --config serve.yaml [--account ID] [--name NAME] [--status S] [--limit N] [--json]
  anvil admin revoke-all  --config serve.yaml (--account ID | --name NAME) --reason REASON [--dry-run] [--json]
  anvil admin crl regenerate --config serve.yaml [--issuer NAME ...] [--wait 1m]
  anvil admin status      --config serve.yaml [--health-url URL] [--json]
  anvil admin backup      --config serve.yaml --out FILE          (SQLite; PostgreSQL: pg_dump)
  anvil admin ledger check --config serve.yaml
` + adminAuditUsage + `

The serve configuration names the database; nothing else in it is used, except
by status and crl regenerate (issuers, admin_listen). The commands from cert list
on also take a signer's configuration.`

func runAdmin(args []string) error {
	return admin(args, os.Stdout)
}

func admin(args []string, out io.Writer) error {
	if len(args) < 1 {
		return errors.New(adminUsage)
	}
	switch {
	case args[0] == "eab" && len(args) >= 2:
		switch args[1] {
		case "create":
			return eabCreate(args[2:], out)
		case "list":
			return eabList(args[2:], out)
		case "revoke":
			return eabRevoke(args[2:], out)
		}
	case args[0] == "revoke":
		return adminRevoke(args[1:], out)
	case args[0] == "cert" && len(args) >= 2 && args[1] == "show":
		return certShow(args[2:], out)
	case args[0] == "ledger" && len(args) >= 2 && args[1] == "check":
		return ledgerCheck(args[2:], out)
	case args[0] == "audit":
		return adminAudit(args[1:], out)
	}
	if run, ok := adminQueryCommands[strings.Join(args[:min(2, len(args))], " ")]; ok {
		return run(args[min(2, len(args)):], out)
	}
	if run, ok := adminQueryCommands[args[0]]; ok {
		return run(args[1:], out)
	}
	return fmt.Errorf("unknown admin command %q\n%s", strings.Join(args, " "), adminUsage)
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// openAdminStore reads the serve configuration and opens its database.
func openAdminStore(path string) (storage.Store, error) {
	if path == "" {
		return nil, errors.New("--config is required")
	}
	var cfg serveConfig
	if err := config.Load(path, &cfg); err != nil {
		return nil, err
	}
	return openStore(context.Background(), cfg.Database)
}

// operatorReasons are the revocation reasons an operator may give (RFC 5280
// 5.3.1, those RFC 8555 7.6 lets a subscriber give too), as flag help says them.
const operatorReasons = "unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation"

// operatorReason is the reason code of a --reason flag, or an error that
// names the flag and the reasons it takes.
func operatorReason(name string) (int, error) {
	code, ok := acme.ReasonCode(name)
	if !ok {
		return 0, fmt.Errorf("--reason %q: want %s", name, operatorReasons)
	}
	return code, nil
}

func eabCreate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin eab create", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	alg := fs.String("alg", "HS256", "MAC algorithm: HS256, HS384 or HS512")
	comment := fs.String("comment", "", "who the key is for")
	var suffixes multiFlag
	fs.Var(&suffixes, "allow-suffix", "limit accounts bound with this key to names under this domain (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keyLen := map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}[*alg]
	if keyLen == 0 {
		return fmt.Errorf("--alg %q: want HS256, HS384 or HS512", *alg)
	}
	store, err := openAdminStore(*cfgPath)
	if err != nil {
		return err
	}
	defer store.Close()
	key := make([]byte, keyLen)
	rand.Read(key)
	k := &storage.EABKey{
		ID:              newEABKeyID(),
		Key:             key,
		Algorithm:       *alg,
		Comment:         *comment,
		AllowedSuffixes: suffixes,
		CreatedAt:       time.Now().UTC(),
	}
	if err := store.CreateEABKey(context.Background(), k); err != nil {
		return err
	}
	if err := recordAdmin(*cfgPath, audit.EABKeyCreated, "eab create", map[string]any{"eab": k.ID, "alg": k.Algorithm, "comment": k.Comment, "allowed_suffixes": k.AllowedSuffixes}); err != nil {
		return err
	}
	hmacKey := base64.RawURLEncoding.EncodeToString(key)
	fmt.Fprintf(out, "key id:    %s\nhmac key:  %s\nalgorithm: %s\n", k.ID, hmacKey, k.Algorithm)
	if len(suffixes) > 0 {
		fmt.Fprintf(out, "names:     under %s only\n", strings.Join(suffixes, ", "))
	}
	fmt.Fprintf(out, "\nThe key binds one account. Give both values to its owner, e.g.\n"+
		"  certbot register --eab-kid %s --eab-hmac-key %s ...\n"+
		"  lego --eab --kid %s --hmac %s ...\n", k.ID, hmacKey, k.ID, hmacKey)
	return nil
}

func eabList(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin eab list", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := openAdminStore(*cfgPath)
	if err != nil {
		return err
	}
	defer store.Close()
	keys, err := store.ListEABKeys(context.Background())
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY ID\tALG\tSTATE\tACCOUNT\tNAMES\tCREATED\tCOMMENT")
	for _, k := range keys {
		state := "unused"
		switch {
		case k.Revoked:
			state = "revoked"
		case k.AccountID != "":
			state = "bound"
		}
		names := "any"
		if len(k.AllowedSuffixes) > 0 {
			names = strings.Join(k.AllowedSuffixes, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, state, k.AccountID, names, k.CreatedAt.Format(time.RFC3339), k.Comment)
	}
	return w.Flush()
}

// newEABKeyID returns 96 random bits in hex. Not base64url: one ID in 64
// would start with '-', which certbot's --eab-kid, lego's --kid and this
// command's own arguments would each take for a flag.
func newEABKeyID() string {
	id := make([]byte, 12)
	rand.Read(id)
	return hex.EncodeToString(id)
}

func eabRevoke(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin eab revoke", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: anvil admin eab revoke --config serve.yaml [--] KEY-ID (-- before an ID that starts with '-')")
	}
	store, err := openAdminStore(*cfgPath)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.RevokeEABKey(context.Background(), fs.Arg(0)); err != nil {
		return err
	}
	if err := recordAdmin(*cfgPath, audit.EABKeyRevoked, "eab revoke", map[string]any{"eab": fs.Arg(0)}); err != nil {
		return err
	}
	fmt.Fprintf(out, "revoked EAB key %s: it binds no further accounts\n", fs.Arg(0))
	return nil
}

func adminRevoke(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin revoke", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	serial := fs.String("serial", "", "serial number in hex")
	reason := fs.String("reason", "unspecified", operatorReasons)
	if err := fs.Parse(args); err != nil {
		return err
	}
	code, err := operatorReason(*reason)
	if err != nil {
		return err
	}
	store, err := openAdminStore(*cfgPath)
	if err != nil {
		return err
	}
	defer store.Close()
	s := normalizeSerial(*serial)
	if s == "" {
		return errors.New("--serial is required (hex)")
	}
	if err := store.RevokeCertificate(context.Background(), s, time.Now().UTC(), code); err != nil {
		switch {
		case errors.Is(err, storage.ErrConflict):
			return fmt.Errorf("certificate %s is already revoked", s)
		case errors.Is(err, storage.ErrNotFound):
			return fmt.Errorf("no issued certificate has serial %s", s)
		}
		return err
	}
	if err := recordAdmin(*cfgPath, audit.CertRevoked, "revoke", map[string]any{"serial": s, "reason": *reason, "by": "operator"}); err != nil {
		return err
	}
	fmt.Fprintf(out, "revoked %s (%s); OCSP answers revoked at once, the CRL within its publishing bound\n", s, *reason)
	return nil
}

func certShow(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin cert show", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	serial := fs.String("serial", "", "serial number in hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := openAdminStore(*cfgPath)
	if err != nil {
		return err
	}
	defer store.Close()
	s := normalizeSerial(*serial)
	c, err := store.GetCertificate(context.Background(), s)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no certificate has serial %s", s)
		}
		return err
	}
	state := "reserved, never signed (no lint certificate)"
	switch {
	case c.Outcome == storage.OutcomeNotSigned:
		state = "not signed: " + c.OutcomeReason
	case c.Outcome == storage.OutcomeAbandoned:
		state = fmt.Sprintf("abandoned (a signature may exist), published as revoked at %s (%s)", c.RevokedAt.Format(time.RFC3339), acme.ReasonName(c.Reason))
	case c.DER == nil && c.LintDER != nil:
		state = "intent recorded, no certificate stored (a signature may exist: see the lint certificate)"
	case !c.RevokedAt.IsZero():
		state = fmt.Sprintf("revoked at %s (%s)", c.RevokedAt.Format(time.RFC3339), acme.ReasonName(c.Reason))
	case c.DER != nil && time.Now().After(c.Expires):
		state = "expired"
	case c.DER != nil:
		state = "valid"
	}
	fmt.Fprintf(out, "serial:   %s\nissuer:   %s\nprofile:  %s\norder:    %s\ncreated:  %s\nexpires:  %s\nstatus:   %s\n",
		c.Serial, c.Issuer, c.Profile, c.OrderID, c.CreatedAt.Format(time.RFC3339), c.Expires.Format(time.RFC3339), state)
	if c.DER != nil {
		fmt.Fprint(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})))
	}
	return nil
}

// normalizeSerial accepts hex with or without colons and leading zeros.
func normalizeSerial(s string) string {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	s = strings.TrimLeft(s, "0")
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return ""
		}
	}
	return s
}
