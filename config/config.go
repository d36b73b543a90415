// Package config owns how Anvil reads its YAML files: strictly (an unknown or
// duplicated key is an error naming the key and its line), with durations written
// as "90d", "24h" or "1h30m"; and the PEM certificate files they name. It knows
// nothing of what the files configure; each package declares its own section
// and validates it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by configuration sections that check themselves
// after decoding; errors should name the YAML path of the offending field.
type Validator interface {
	Validate() error
}

// Load reads path strictly into v and validates it if v is a Validator.
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := Decode(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// Decode decodes one YAML document strictly into v and validates it.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the file is empty")
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
		msg = unknownField.ReplaceAllString(msg, `unknown key "$1"`)
		return errors.New(msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document in the file")
	}
	if val, ok := v.(Validator); ok {
		return val.Validate()
	}
	return nil
}

// Duration is a time.Duration written in YAML as Go duration syntax, extended
// with a "d" unit for days: "90d", "24h", "1h30m", "2d12h".
type Duration struct{ time.Duration }

// ParseDuration parses the syntax of Duration.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	whole := s
	var days time.Duration
	if i := strings.Index(s, "d"); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("duration %q: bad day count", s)
		}
		// A time.Duration holds about 292 years; more days would wrap round
		// to a negative or a small duration.
		if n > uint64(math.MaxInt64/(24*time.Hour)) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90d, 24h, 1h30m", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	if d > math.MaxInt64-days {
		return 0, fmt.Errorf("duration %q is too long", whole)
	}
	return days + d, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a string like 90d or 24h", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Or returns d, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

// Problems collects validation errors, each prefixed with the YAML path of the
// field, so that one run reports everything wrong in a file.
type Problems []string

// Addf records a problem at path.
func (p *Problems) Addf(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

// Require records a problem if value is empty.
func (p *Problems) Require(path, value string) {
	if strings.TrimSpace(value) == "" {
		p.Addf(path, "is required")
	}
}

// Add records err, if any, at path.
func (p *Problems) Add(path string, err error) {
	if err != nil {
		p.Addf(path, "%v", err)
	}
}

// Err returns the problems as one error, or nil.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}
