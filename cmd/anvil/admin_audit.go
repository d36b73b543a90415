package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
)

const adminAuditUsage = `  anvil admin audit verify --config serve.yaml [--file LOG] [--public-key PEM] [--live]`

// adminAudit runs `anvil admin audit ...`.
func adminAudit(args []string, out io.Writer) error {
	if len(args) >= 1 && args[0] == "verify" {
		return auditVerify(args[1:], out)
	}
	return fmt.Errorf("usage:\n%s", adminAuditUsage)
}

// auditVerify checks an audit file's chain and checkpoint signatures with the
// public key alone (no HSM), and names the first bad line.
func auditVerify(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin audit verify", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve or signer YAML file (its audit section)")
	file := fs.String("file", "", "the audit file (default: audit.path of the configuration)")
	pubPath := fs.String("public-key", "", "PEM public key or certificate of the audit key (default: audit.public_key)")
	live := fs.Bool("live", false, "the file's process is still running: accept lines after the last checkpoint, and count them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ac auditConfig
	if *cfgPath != "" {
		var err error
		if ac, err = auditSection(*cfgPath); err != nil {
			return err
		}
	} else if *file == "" || *pubPath == "" {
		return errors.New("give --config, or both --file and --public-key")
	}
	if *file == "" {
		if !ac.enabled() {
			return fmt.Errorf("%s has no audit.path: give --file", *cfgPath)
		}
		*file = ac.path()
	}
	if *pubPath != "" {
		ac.PublicKey = *pubPath
	}
	if ac.PublicKey == "" {
		return errors.New("no public key: give --public-key or audit.public_key")
	}
	pub, err := ac.publicKey()
	if err != nil {
		return err
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := audit.Verify(f, pub, audit.VerifyOptions{Live: *live})
	if err != nil {
		var le *audit.LineError
		if errors.As(err, &le) {
			return fmt.Errorf("audit log %s: NOT VERIFIED: %w", *file, err)
		}
		return fmt.Errorf("audit log %s: %w", *file, err)
	}
	fp, _ := audit.KeyFingerprint(pub)
	fmt.Fprintf(out, "audit log %s: verified\n", *file)
	fmt.Fprintf(out, "  %d lines, %d runs, %d signed checkpoints (key sha256 %s)\n", rep.Lines, rep.Runs, rep.Checkpoints, fp)
	if rep.Closed {
		fmt.Fprintf(out, "  ends with a shutdown checkpoint (line %d)\n", rep.Lines)
	} else {
		fmt.Fprintf(out, "  last signed checkpoint: line %d; %d line(s) after it are not signed yet (--live)\n", rep.LastSigned, rep.Unsigned)
	}
	fmt.Fprintf(out, "  head %s\n", rep.Head)
	for _, b := range rep.Unclean {
		fmt.Fprintf(out, "  WARNING: the run before line %d ended without a shutdown checkpoint (a crash, or its tail was cut while stopped): lines %d to %d were never signed by the run that wrote them\n",
			b.StartLine, b.LastSigned+1, b.StartLine-1)
	}
	return nil
}

// adminCAConfig reads the sections shared by serve and signer (database, hsm,
// audit) from either command's configuration, each decoded strictly as its
// command would: the admin commands take both.
func adminCAConfig(path string) (*caConfig, error) {
	var serve serveConfig
	serr := config.Load(path, &serve)
	if serr == nil {
		return &serve.caConfig, nil
	}
	var signer signerConfig
	if err := config.Load(path, &signer); err == nil {
		return &signer.caConfig, nil
	}
	return nil, serr
}

// auditSection reads the audit section of a serve or signer configuration,
// each decoded strictly as its command would.
func auditSection(path string) (auditConfig, error) {
	var serve serveConfig
	serr := config.Load(path, &serve)
	if serr == nil {
		return serve.Audit, nil
	}
	var signer signerConfig
	if err := config.Load(path, &signer); err == nil {
		return signer.Audit, nil
	}
	return auditConfig{}, serr
}

// recordAdmin writes one event of an admin command to the admin audit file of the
// serve configuration, as a run of its own (signed start, the event, signed
// shutdown), before the command reports success. Without an audit section it
// does nothing.
func recordAdmin(cfgPath, typ, command string, data map[string]any) error {
	cfg, err := adminCAConfig(cfgPath)
	if err != nil {
		return err
	}
	if !cfg.Audit.enabled() {
		return nil
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := &core{cfg: cfg, log: logger}
	defer c.close()
	rec, err := c.openAudit(&cfg.Audit, cfg.Audit.adminPath())
	if err != nil {
		return fmt.Errorf("the change is made, but not audited: %w", err)
	}
	if data == nil {
		data = map[string]any{}
	}
	data["command"] = command
	data["operator"] = operator()
	if err := rec.Record(context.Background(), audit.Event{Type: typ, Data: data}); err != nil {
		return fmt.Errorf("the change is made, but not audited: %w", err)
	}
	if l, ok := rec.(interface{ Close() error }); ok {
		c.closers = c.closers[:len(c.closers)-1] // closed here, to report its error
		if err := l.Close(); err != nil {
			return fmt.Errorf("the change is made and audited, but the admin audit file was not closed cleanly: %w", err)
		}
	}
	return nil
}

// operator names who ran the command: the login user, and sudo's original
// user when there is one.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if s := os.Getenv("SUDO_USER"); s != "" {
		name += " (sudo by " + s + ")"
	}
	return name
}
