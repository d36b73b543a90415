package hsm

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// PINSource says where a token's user PIN comes from: a file or an environment
// variable, exactly one. There is deliberately no way to give the PIN itself,
// so that it never lands in a config file, a URI or a command line.
type PINSource struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
	// Ask, when set, is called for the PIN: an interactive prompt without echo
	// (the ceremony's). It cannot come from configuration.
	Ask func() (string, error) `yaml:"-"`
}

// ParsePINSource reads the RFC 7512 pin-source forms Anvil accepts:
// "file:/path/to/pin" (or a bare absolute path) and "env:NAME".
func ParsePINSource(s string) (PINSource, error) {
	switch {
	case strings.HasPrefix(s, "env:"):
		return PINSource{Env: strings.TrimPrefix(s, "env:")}, nil
	case strings.HasPrefix(s, "file://"):
		return PINSource{File: strings.TrimPrefix(s, "file://")}, nil
	case strings.HasPrefix(s, "file:"):
		return PINSource{File: strings.TrimPrefix(s, "file:")}, nil
	case strings.HasPrefix(s, "/"):
		return PINSource{File: s}, nil
	}
	return PINSource{}, fmt.Errorf("pin-source %q: want file:/path or env:NAME", s)
}

// IsZero reports whether no source is set.
func (p PINSource) IsZero() bool { return p.File == "" && p.Env == "" && p.Ask == nil }

// String names the source, never the PIN.
func (p PINSource) String() string {
	switch {
	case p.File != "":
		return "file:" + p.File
	case p.Env != "":
		return "env:" + p.Env
	case p.Ask != nil:
		return "prompt"
	}
	return "(none)"
}

// Read returns the PIN. A file's trailing newline is dropped. A PIN file that
// others can read is refused: a CA's PIN must not be world-readable.
func (p PINSource) Read() (string, error) {
	if (p.File != "" && p.Env != "") || (p.Ask != nil && (p.File != "" || p.Env != "")) {
		return "", errors.New("pin: set exactly one of file, env and prompt")
	}
	var pin string
	switch {
	case p.File != "":
		fi, err := os.Stat(p.File)
		if err != nil {
			return "", fmt.Errorf("pin file: %w", err)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			return "", fmt.Errorf("pin file %s is accessible to others (mode %04o): chmod 600 it", p.File, fi.Mode().Perm())
		}
		b, err := os.ReadFile(p.File)
		if err != nil {
			return "", fmt.Errorf("pin file: %w", err)
		}
		pin = strings.TrimRight(string(b), "\r\n")
	case p.Env != "":
		v, ok := os.LookupEnv(p.Env)
		if !ok {
			return "", fmt.Errorf("pin: environment variable %s is not set", p.Env)
		}
		pin = v
	case p.Ask != nil:
		v, err := p.Ask()
		if err != nil {
			return "", fmt.Errorf("pin prompt: %w", err)
		}
		pin = v
	default:
		return "", errors.New("pin: no source: set pin.file or pin.env")
	}
	if pin == "" {
		return "", fmt.Errorf("pin from %s is empty", p)
	}
	return pin, nil
}
