package config

import (
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// fuzzDoc stands for a configuration file: scalars, durations, lists,
// maps, pointers and nested sections.
type fuzzDoc struct {
	Name     string         `yaml:"name"`
	Validity Duration       `yaml:"validity"`
	Enabled  *bool          `yaml:"enabled"`
	Ports    []int          `yaml:"ports"`
	Limits   map[string]int `yaml:"limits"`
	Issuers  []struct {
		Name string   `yaml:"name"`
		TTL  Duration `yaml:"ttl"`
	} `yaml:"issuers"`
	Nested struct {
		Key string `yaml:"key"`
	} `yaml:"nested"`
}

// FuzzDecode: Decode never panics or hangs on any bytes (aliases included),
// refuses a second document, and what it accepts has no duplicate mapping
// key anywhere (read independently as a yaml.Node tree) and survives a round
// trip through yaml.Marshal and Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"name: a\nvalidity: 90d\nenabled: true\nports: [80, 443]\nlimits: {a: 1, b: 2}\nissuers:\n  - name: x\n    ttl: 1h30m\nnested:\n  key: k\n",
		"name: a\nname: b\n",
		"limits: {a: 1, a: 2}\n",
		"colour: red\n",
		"validity: 4294967295d\n",
		"validity: 106752d\n",
		"validity: [1]\n",
		"name: &a x\nnested:\n  key: *a\n",
		"a: &a [*a]\n",
		"x: &x [1,1,1,1,1,1,1,1,1]\ny: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x]\nz: &z [*y,*y,*y,*y,*y,*y,*y,*y,*y]\n",
		"<<: {name: a}\nname: b\n",
		"name: a\n---\nname: b\n",
		"",
		"~",
		"name: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d fuzzDoc
		if err := Decode(b, &d); err != nil {
			return
		}
		var root yaml.Node
		if err := yaml.Unmarshal(b, &root); err != nil {
			t.Fatalf("accepted %q, which yaml.Node cannot read: %v", b, err)
		}
		if err := noDuplicateKeys(&root, 0); err != nil {
			t.Fatalf("accepted %q: %v", b, err)
		}
		if d.Validity.Duration < 0 {
			t.Fatalf("accepted a negative validity %v", d.Validity)
		}
		out, err := yaml.Marshal(&d)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back fuzzDoc
		if err := Decode(out, &back); err != nil {
			t.Fatalf("%q decoded, re-encoded as %q, refused: %v", b, out, err)
		}
		if !reflect.DeepEqual(normalize(d), normalize(back)) {
			t.Fatalf("round trip changed %+v into %+v (via %q)", d, back, out)
		}
	})
}

// normalize makes empty and nil collections alike, which YAML cannot tell apart.
func normalize(d fuzzDoc) fuzzDoc {
	if len(d.Ports) == 0 {
		d.Ports = nil
	}
	if len(d.Limits) == 0 {
		d.Limits = nil
	}
	if len(d.Issuers) == 0 {
		d.Issuers = nil
	}
	return d
}

// noDuplicateKeys walks a node tree (not following aliases) and refuses a
// mapping with a key twice; merge keys ("<<") are left to the decoder.
func noDuplicateKeys(n *yaml.Node, depth int) error {
	if depth > 200 {
		return nil
	}
	if n.Kind == yaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode && k.Value != "<<" {
				if seen[k.Tag+":"+k.Value] {
					return errors.New("duplicate key " + k.Value)
				}
				seen[k.Tag+":"+k.Value] = true
			}
		}
	}
	for _, c := range n.Content {
		if err := noDuplicateKeys(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// FuzzParseDuration: an accepted duration is exactly its day count times
// 24 hours plus the Go duration after it, computed without overflow, and
// never negative; Go's own spelling of it reads back the same.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90d", "24h", "1h30m", "2d12h", "0s", " 7d ", "d", "-1h", "1d-1h", "4294967295d",
		"106751d", "106752d", "106751d23h47m16.854775807s", "106751d23h47m17s", "1d1d", "1.5d", "+1d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q accepted as negative %v", s, d)
		}
		want := new(big.Int)
		rest := strings.TrimSpace(s)
		if days, r, ok := strings.Cut(rest, "d"); ok {
			n, ok := new(big.Int).SetString(days, 10)
			if !ok {
				t.Fatalf("%q accepted with day count %q", s, days)
			}
			want.Mul(n, big.NewInt(int64(24*time.Hour)))
			rest = r
		}
		if rest != "" {
			g, err := time.ParseDuration(rest)
			if err != nil {
				t.Fatalf("%q accepted with %q after the days: %v", s, rest, err)
			}
			want.Add(want, big.NewInt(int64(g)))
		}
		if want.Cmp(big.NewInt(int64(d))) != 0 {
			t.Fatalf("%q is %s ns, parsed as %d ns (overflow)", s, want, d)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d, d.String(), back, err)
		}
	})
}
