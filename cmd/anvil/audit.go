package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/validation"
)

// auditConfig is the audit: section of serve.yaml and signer.yaml. Without a
// path there is no audit log (and the process says so at start).
type auditConfig struct {
	// Path is this process's audit file. "{node}" in it is replaced by Node,
	// so that front ends sharing one configuration write their own files.
	Path string `yaml:"path"`
	// AdminPath is where `anvil admin` commands that change state record
	// themselves, each run its own signed run (default Path + ".admin").
	AdminPath string `yaml:"admin_path"`
	// Node names this process in every line (default: the host name).
	Node string `yaml:"node"`
	// Sync is always (fsync before the response; concurrent requests share
	// one fsync) or interval (fsync every sync_interval).
	Sync               string          `yaml:"sync"`
	SyncInterval       config.Duration `yaml:"sync_interval"`
	CheckpointInterval config.Duration `yaml:"checkpoint_interval"`
	// Key is the PKCS#11 URI of the audit key that signs checkpoints. On a
	// front end without an hsm section, the URI names its module and PIN
	// (module-path=..., pin-source=file:...).
	Key string `yaml:"key"`
	// PublicKey is the PEM public key (or certificate) of Key: verify needs
	// it, and the server checks at start that the HSM key matches it.
	PublicKey string `yaml:"public_key"`
}

func (c *auditConfig) enabled() bool { return c.Path != "" }

// validate checks the audit section; every problem names its YAML path.
func (c *auditConfig) validate(p *config.Problems) {
	if !c.enabled() {
		if c.Key != "" || c.PublicKey != "" || c.AdminPath != "" || c.Sync != "" {
			p.Addf("audit.path", "is required when the audit section is given")
		}
		return
	}
	switch c.Sync {
	case "", audit.SyncAlways, audit.SyncInterval:
	default:
		p.Addf("audit.sync", "%q: want always or interval", c.Sync)
	}
	p.Require("audit.key", c.Key)
	if c.Key != "" {
		if _, err := hsm.ParseURI(c.Key); err != nil {
			p.Addf("audit.key", "%v", err)
		}
	}
	p.Require("audit.public_key", c.PublicKey)
}

func (c *auditConfig) node() string {
	if c.Node != "" {
		return c.Node
	}
	h, _ := os.Hostname()
	return h
}

func (c *auditConfig) path() string { return strings.ReplaceAll(c.Path, "{node}", c.node()) }
func (c *auditConfig) adminPath() string {
	if c.AdminPath != "" {
		return strings.ReplaceAll(c.AdminPath, "{node}", c.node())
	}
	return c.path() + ".admin"
}

// publicKey reads the configured public key.
func (c *auditConfig) publicKey() (crypto.PublicKey, error) {
	b, err := os.ReadFile(c.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("audit.public_key: %w", err)
	}
	pub, err := audit.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("audit.public_key: %s: %w", c.PublicKey, err)
	}
	return pub, nil
}

// loadedConfig is the configuration file this process started from, for the
// config.loaded audit event.
var loadedConfig struct {
	path   string
	sha256 string
}

func rememberConfig(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	loadedConfig.path, loadedConfig.sha256 = path, hex.EncodeToString(sum[:])
}

// openAudit opens this process's audit log at path, signing with the audit
// key, and records the configuration it runs with. With no audit section it
// returns audit.Discard. The log is closed (shutdown checkpoint) before the
// tokens, since the closers run in reverse.
func (c *core) openAudit(ac *auditConfig, path string) (audit.Recorder, error) {
	if !ac.enabled() {
		c.log.Warn("no audit section: security events go to this log only, unchained and unsigned")
		return audit.Discard, nil
	}
	u, err := hsm.ParseURI(ac.Key)
	if err != nil {
		return nil, fmt.Errorf("audit.key: %w", err)
	}
	if (u.ModulePath == "" && c.cfg.HSM.Module == "") || (u.PINSource == "" && c.cfg.HSM.PIN.IsZero()) {
		return nil, fmt.Errorf("audit.key: with no hsm section (a front end with a signer), the URI names its module and PIN: ...?module-path=/path/to/module.so&pin-source=file:/path/to/pin")
	}
	tok, err := c.tokenFor(u)
	if err != nil {
		return nil, fmt.Errorf("audit.key: %w", err)
	}
	key, err := tok.FindKey(u.KeyRef())
	if err != nil {
		return nil, fmt.Errorf("audit.key: %w", err)
	}
	pub, err := ac.publicKey()
	if err != nil {
		return nil, err
	}
	if k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return nil, fmt.Errorf("audit.key: the key in the HSM is not the one in audit.public_key (%s)", ac.PublicKey)
	}
	l, err := audit.Open(audit.Config{
		Path: path, Node: ac.node(), Sync: ac.Sync, SyncInterval: ac.SyncInterval.Duration,
		CheckpointInterval: ac.CheckpointInterval.Duration, Signer: key, Logger: c.log,
	})
	if err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}
	c.closers = append(c.closers, func() {
		if err := l.Close(); err != nil {
			c.log.Error("audit log not closed cleanly", "error", err)
		}
	})
	if loadedConfig.path != "" {
		if err := l.Record(context.Background(), audit.Event{Type: audit.ConfigLoaded, Data: map[string]any{
			"path": loadedConfig.path, "sha256": loadedConfig.sha256, "version": version,
		}}); err != nil {
			return nil, err
		}
	}
	c.log.Info("audit log open", "path", path, "node", ac.node(), "sync", ac.Sync)
	return l, nil
}

// ValidateContacted validates and reports the addresses dialed, for the
// audit log's authorization events.
func (a validatorAdapter) ValidateContacted(ctx context.Context, ident acme.Identifier, typ, token, keyAuth string) ([]string, error) {
	var c validation.Contacted
	err := a.Validate(validation.WithContacted(ctx, &c), ident, typ, token, keyAuth)
	return c.Addresses(), err
}

var _ acme.ContactReporter = validatorAdapter{}
