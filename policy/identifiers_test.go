package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/issuance"
)

// Every special-use suffix is refused by default, at its own name and below
// it, in the front end's check and in the signer's (CheckNames); each can be
// allowed on its own.
func TestSpecialUseNames(t *testing.T) {
	suffixes := []string{"local", "localhost", "invalid", "test", "example", "onion", "alt", "home.arpa", "internal", "example.com", "example.net", "example.org",
		"ipv4only.arpa", "resolver.arpa", "service.arpa", "6tisch.arpa", "in-addr.arpa", "ip6.arpa"}
	if got := SpecialUseSuffixes(); strings.Join(got, ",") != strings.Join([]string{"local", "localhost", "invalid", "test", "example", "example.com", "example.net", "example.org", "onion", "alt", "home.arpa", "ipv4only.arpa", "resolver.arpa", "service.arpa", "6tisch.arpa", "in-addr.arpa", "ip6.arpa", "internal"}, ",") {
		t.Errorf("SpecialUseSuffixes() = %v", got)
	}
	def, err := New(Config{AllowSingleLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range suffixes {
		for _, name := range []string{s, "host." + s, "a.b." + strings.ToUpper(s), "*.wild." + s} {
			_, _, err := def.CheckDNSName(name)
			if !errors.Is(err, issuance.ErrRejectedName) || !strings.Contains(err.Error(), "special-use") || !strings.Contains(err.Error(), `"`+s+`"`) {
				t.Errorf("%s: got %v, want a special-use refusal naming %q", name, err, s)
			}
			if err := def.CheckNames([]string{name}, nil); !errors.Is(err, issuance.ErrRejectedName) {
				t.Errorf("signer policy accepted %s: %v", name, err)
			}
		}
		// Allowing one suffix allows it and nothing else.
		one, err := New(Config{AllowSingleLabel: true, AllowSpecialUse: []string{s}})
		if err != nil {
			t.Fatalf("allow_special_use [%s]: %v", s, err)
		}
		if _, _, err := one.CheckDNSName("host." + s); err != nil {
			t.Errorf("host.%s refused with allow_special_use [%s]: %v", s, s, err)
		}
		if err := one.CheckNames([]string{"host." + s}, nil); err != nil {
			t.Errorf("signer refused host.%s with allow_special_use [%s]: %v", s, s, err)
		}
		for _, other := range suffixes {
			if other == s {
				continue
			}
			if _, _, err := one.CheckDNSName("host." + other); err == nil {
				t.Errorf("host.%s accepted with allow_special_use [%s]", other, s)
			}
		}
	}
	// Near misses are ordinary names.
	for _, name := range []string{"localhost.com", "mytest.org", "example.co", "local.example.de", "onion.net", "notexample.com", "home.arpa.net", "internal.company.de"} {
		if _, _, err := def.CheckDNSName(name); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	// Spelling variants of an allowed entry; an entry not in the list is an
	// error naming the config field.
	if _, err := New(Config{AllowSpecialUse: []string{"LOCALHOST", ".test"}}); err != nil {
		t.Errorf("allow_special_use with case and a leading dot: %v", err)
	}
	for _, bad := range []string{"com", "example.co", "anvil.localhost", "arpa", ""} {
		_, err := New(Config{AllowSpecialUse: []string{bad}})
		if err == nil || !strings.Contains(err.Error(), "policy.allow_special_use") || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("allow_special_use [%q]: got %v, want an error naming the field and the entry", bad, err)
		}
	}
	// allowed_suffixes does not open a special-use suffix by itself.
	as, _ := New(Config{AllowedSuffixes: []string{"example.com"}})
	if _, _, err := as.CheckDNSName("www.example.com"); err == nil {
		t.Error("www.example.com accepted through allowed_suffixes alone")
	}
}

// A label that starts with xn-- (in any case) must be a valid IDNA2008
// A-label, and a refusal names the label.
func TestIDNLabels(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"xn--bcher-kva.de":         "xn--bcher-kva.de",         // bücher
		"www.xn--mnchen-3ya.de":    "www.xn--mnchen-3ya.de",    // münchen
		"XN--BCHER-KVA.de":         "xn--bcher-kva.de",         // upper case is the same A-label
		"Xn--wgv71a119e.jp":        "xn--wgv71a119e.jp",        // 日本語
		"xn--hxajbheg2az3al.gr":    "xn--hxajbheg2az3al.gr",    // παράδειγμα
		"xn--zca.de":               "xn--zca.de",               // ß, an IDNA2008 exception (PVALID)
		"*.xn--bcher-kva.anvil.de": "*.xn--bcher-kva.anvil.de", // wildcard over an IDN
	} {
		got, _, err := r.CheckDNSName(name)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
	for _, c := range []struct{ name, label, why string }{
		{"xn--ex-8tb.de", "xn--ex-8tb", "NFC"},                                    // e + U+0301 combining acute
		{"XN--EX-8TB.de", "xn--ex-8tb", "NFC"},                                    // the same, upper case
		{"xn--a-ecp.de", "xn--a-ecp", "U+2488"},                                   // ⒈, disallowed
		{"www.xn--ls8h.de", "xn--ls8h", "U+1F4A9"},                                // an emoji: UTS 46 takes it, IDNA2008 does not
		{"xn--ab-hvd.de", "xn--ab-hvd", "U+0640"},                                 // tatweel, an IDNA2008 DISALLOWED exception
		{"xn--x-wb3s.de", "xn--x-wb3s", "U+1F4A9"},                                // emoji inside a label
		{"Xn--A-Ecp.de", "xn--a-ecp", "U+2488"},                                   // mixed-case prefix
		{"xn--bcher-2pa.de", "xn--bcher-2pa", `converts back to "xn--bcher-kva"`}, // bÜcher: upper case inside the U-label
		{"XN--BCHER-2PA.de", "xn--bcher-2pa", `converts back to "xn--bcher-kva"`}, // the same, upper case
		{"xn--x-sy8h.de", "xn--x-sy8h", `converts back to "fix"`},                 // the ligature ﬁ
		{"xn--x-vca.de", "xn--x-vca", `converts back to "x"`},                     // a soft hyphen, ignored by UTS 46
		{"xn--zzzzzzzzz.de", "xn--zzzzzzzzz", "Punycode"},                         // not Punycode at all
		{"xn--a.de", "xn--a", "U+0080"},                                           // decodes to a control character
		{"xn--abc-.de", "xn--abc-", "hyphen"},                                     // would decode to plain "abc"
		{"xn--bcher-kva.xn--a-ecp.de", "xn--a-ecp", "U+2488"},                     // the bad label is named, not the first
		{"xn--mnchen-3ya.xn--ls8h.de", "xn--ls8h", "does not permit"},             // a valid label then a bad one
	} {
		_, _, err := r.CheckDNSName(c.name)
		if !errors.Is(err, issuance.ErrRejectedName) || !strings.Contains(err.Error(), `"`+c.label+`"`) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: got %v; want a refusal naming %q and %q", c.name, err, c.label, c.why)
		}
		if err := r.CheckNames([]string{c.name}, nil); !errors.Is(err, issuance.ErrRejectedName) {
			t.Errorf("signer policy accepted %s: %v", c.name, err)
		}
	}
}
