package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type section struct {
	Name     string   `yaml:"name"`
	Validity Duration `yaml:"validity"`
}

type file struct {
	Section section `yaml:"section"`
}

func (f *file) Validate() error {
	var p Problems
	p.Require("section.name", f.Section.Name)
	return p.Err()
}

func TestDecodeStrict(t *testing.T) {
	var f file
	if err := Decode([]byte("section:\n  name: a\n  validity: 90d\n"), &f); err != nil {
		t.Fatal(err)
	}
	if f.Section.Validity.Duration != 90*24*time.Hour {
		t.Fatalf("validity %v", f.Section.Validity)
	}
	for doc, want := range map[string]string{
		"section:\n  name: a\n  colour: red\n":    `line 3: unknown key "colour"`,
		"section:\n  name: a\n  name: b\n":        `line 3: mapping key "name" already defined at line 2`,
		"section:\n  validity: 1d\n":              "section.name: is required",
		"section:\n  name: a\n  validity: soon\n": "line 3: duration",
		"":                                 "empty",
		"section:\n  name: a\n---\nx: 1\n": "more than one YAML document",
	} {
		var f file
		err := Decode([]byte(doc), &f)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) = %v, want %q", doc, err, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "24h": 24 * time.Hour, "1h30m": 90 * time.Minute, "2d12h": 60 * time.Hour, "0s": 0,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1h", "xd", "10", "1d-1h"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	var p Problems
	p.Add("a", errors.New("bad"))
	if p.Err() == nil || p.Err().Error() != "a: bad" {
		t.Fatal(p.Err())
	}
}
