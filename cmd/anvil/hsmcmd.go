package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/anvil-pki/anvil/hsm"
)

func init() {
	register("hsm", "operator commands: tokens, objects, check", runHSM)
}

const hsmUsage = `usage:
  anvil hsm tokens  --module PATH
  anvil hsm objects --key-uri URI | --module PATH --token LABEL [--pin-file F | --pin-env V]
  anvil hsm check   --key-uri URI [--module PATH] [--pin-file F | --pin-env V]

A key URI is an RFC 7512 PKCS#11 URI, e.g.
  pkcs11:token=anvil-online;object=int-ecdsa;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/anvil/pin
PINs come from a file or an environment variable, never from the command line.`

func runHSM(args []string) error {
	if len(args) == 0 {
		return errors.New(hsmUsage)
	}
	switch args[0] {
	case "tokens":
		return hsmTokens(args[1:], os.Stdout)
	case "objects":
		return hsmObjects(args[1:], os.Stdout)
	case "check":
		return hsmCheck(args[1:], os.Stdout)
	}
	return fmt.Errorf("unknown hsm command %q\n%s", args[0], hsmUsage)
}

// tokenFlags are the flags that select a token and its PIN.
type tokenFlags struct {
	module, token, serial, pinFile, pinEnv, keyURI string
}

func (f *tokenFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.module, "module", "", "PKCS#11 module path")
	fs.StringVar(&f.token, "token", "", "token label")
	fs.StringVar(&f.serial, "serial", "", "token serial number")
	fs.StringVar(&f.pinFile, "pin-file", "", "file holding the user PIN")
	fs.StringVar(&f.pinEnv, "pin-env", "", "environment variable holding the user PIN")
	fs.StringVar(&f.keyURI, "key-uri", "", "RFC 7512 PKCS#11 URI of a key (may carry module-path and pin-source)")
}

// open resolves the flags (and the URI's attributes, which flags override) into
// an open token and, if a URI names a key, that key's reference.
func (f *tokenFlags) open() (*hsm.Token, *hsm.KeyRef, error) {
	cfg := hsm.Config{ModulePath: f.module, TokenLabel: f.token, TokenSerial: f.serial,
		PIN: hsm.PINSource{File: f.pinFile, Env: f.pinEnv}}
	var ref *hsm.KeyRef
	if f.keyURI != "" {
		u, err := hsm.ParseURI(f.keyURI)
		if err != nil {
			return nil, nil, err
		}
		if cfg.ModulePath == "" {
			cfg.ModulePath = u.ModulePath
		}
		if cfg.TokenLabel == "" && cfg.TokenSerial == "" {
			cfg.TokenLabel, cfg.TokenSerial = u.Token, u.Serial
		}
		if cfg.PIN.IsZero() && u.PINSource != "" {
			if cfg.PIN, err = hsm.ParsePINSource(u.PINSource); err != nil {
				return nil, nil, err
			}
		}
		if u.Object != "" || len(u.ID) > 0 {
			r := u.KeyRef()
			ref = &r
		}
	}
	if cfg.ModulePath == "" {
		return nil, nil, errors.New("no module: give --module or module-path in the key URI")
	}
	tok, err := hsm.Open(cfg)
	return tok, ref, err
}

func hsmTokens(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hsm tokens", flag.ContinueOnError)
	module := fs.String("module", "", "PKCS#11 module path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *module == "" {
		return errors.New("--module is required")
	}
	tokens, err := hsm.ListTokens(*module)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SLOT\tLABEL\tSERIAL\tMANUFACTURER\tMODEL\tINITIALIZED")
	for _, t := range tokens {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%v\n", t.Slot, t.Label, t.Serial, t.Manufacturer, t.Model, t.Initialized)
	}
	return w.Flush()
}

func hsmObjects(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hsm objects", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	tok, _, err := tf.open()
	if err != nil {
		return err
	}
	defer tok.Close()
	objs, err := tok.Objects()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLASS\tLABEL\tID\tTYPE\tSIZE\tFLAGS")
	for _, o := range objs {
		var flags []string
		add := func(on bool, name string) {
			if on {
				flags = append(flags, name)
			}
		}
		add(o.Private, "private")
		add(o.Sensitive, "sensitive")
		add(o.AlwaysSensitive, "always-sensitive")
		add(o.Extractable, "EXTRACTABLE")
		add(o.NeverExtractable, "never-extractable")
		add(o.Local, "local")
		add(o.Sign, "sign")
		add(o.Decrypt, "DECRYPT")
		add(o.Unwrap, "UNWRAP")
		add(o.Derive, "DERIVE")
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Class, o.Label, hex.EncodeToString(o.ID), o.KeyType, o.Size, strings.Join(flags, ","))
	}
	return w.Flush()
}

func hsmCheck(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("hsm check", flag.ContinueOnError)
	var tf tokenFlags
	tf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	tok, ref, err := tf.open()
	if err != nil {
		return err
	}
	defer tok.Close()
	if ref == nil {
		return errors.New("--key-uri must name a key (object= and/or id=)")
	}
	key, err := tok.FindKey(*ref)
	if err != nil {
		return err
	}
	if err := key.Check(context.Background()); err != nil {
		return err
	}
	fmt.Fprintf(out, "ok: key %s on token %s signs, and its signature verifies with its public key\n", ref, tok.Label())
	return nil
}
