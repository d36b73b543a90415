package hsm

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
)

// URI is the part of an RFC 7512 PKCS#11 URI that Anvil uses to name a key:
//
//	pkcs11:token=anvil-online;object=int-ecdsa;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/anvil/pin
//
// Tokens are named by label or serial, never by slot: slot numbers are not stable.
// pin-value is refused, so that a PIN never sits in a config file.
type URI struct {
	Token      string // token label
	Serial     string // token serial number
	Object     string // CKA_LABEL of the key
	ID         []byte // CKA_ID of the key
	Type       string // "private" or "" (Anvil only ever names private keys)
	ModulePath string
	PINSource  string
}

// ParseURI parses a PKCS#11 URI strictly: unknown attributes are errors, except
// the vendor-specific x- ones, which RFC 7512 says consumers may ignore.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("pkcs11 uri %q: must start with pkcs11:", s)
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	for _, attr := range splitNonEmpty(path, ";") {
		name, raw, ok := strings.Cut(attr, "=")
		if !ok {
			return nil, fmt.Errorf("pkcs11 uri %q: attribute %q has no value", s, attr)
		}
		if seen[name] {
			return nil, fmt.Errorf("pkcs11 uri %q: attribute %s given twice", s, name)
		}
		seen[name] = true
		val, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("pkcs11 uri %q: attribute %s: %w", s, name, err)
		}
		switch name {
		case "token":
			u.Token = val
		case "serial":
			u.Serial = val
		case "object":
			u.Object = val
		case "id":
			if val != "" { // id= names no ID, as String prints it
				u.ID = []byte(val)
			}
		case "type":
			if val != "private" {
				return nil, fmt.Errorf("pkcs11 uri %q: type=%s: Anvil names private keys only", s, val)
			}
			u.Type = val
		case "slot-id", "slot-description", "slot-manufacturer":
			return nil, fmt.Errorf("pkcs11 uri %q: %s is not accepted: slots are renumbered, name the token by token= or serial=", s, name)
		case "manufacturer", "model", "library-manufacturer", "library-description", "library-version":
			// Accepted for compatibility; they do not change which token is chosen.
		default:
			if !strings.HasPrefix(name, "x-") {
				return nil, fmt.Errorf("pkcs11 uri %q: unknown attribute %s", s, name)
			}
		}
	}
	seenQuery := map[string]bool{}
	for _, attr := range splitNonEmpty(query, "&") {
		name, raw, ok := strings.Cut(attr, "=")
		if !ok {
			return nil, fmt.Errorf("pkcs11 uri %q: query attribute %q has no value", s, attr)
		}
		if seenQuery[name] {
			return nil, fmt.Errorf("pkcs11 uri %q: query attribute %s given twice", s, name)
		}
		seenQuery[name] = true
		// Percent-decoding only: in RFC 7512 a "+" in the query is a plus,
		// not a space as in an HTML form.
		val, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("pkcs11 uri %q: query attribute %s: %w", s, name, err)
		}
		switch name {
		case "module-path":
			u.ModulePath = val
		case "pin-source":
			u.PINSource = val
		case "pin-value":
			return nil, fmt.Errorf("pkcs11 uri: pin-value is refused: give the PIN by pin-source=file:... or env:...")
		case "module-name":
			return nil, fmt.Errorf("pkcs11 uri %q: module-name is not supported, give module-path", s)
		default:
			if !strings.HasPrefix(name, "x-") {
				return nil, fmt.Errorf("pkcs11 uri %q: unknown query attribute %s", s, name)
			}
		}
	}
	if u.Token == "" && u.Serial == "" {
		return nil, fmt.Errorf("pkcs11 uri %q: names no token: add token= or serial=", s)
	}
	return u, nil
}

// KeyRef returns the key this URI names.
func (u *URI) KeyRef() KeyRef { return KeyRef{ID: u.ID, Label: u.Object} }

// String formats the URI with every byte of id percent-encoded, as RFC 7512 asks.
func (u *URI) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("serial", u.Serial)
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b bytes.Buffer
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02x", c)
		}
		parts = append(parts, "id="+b.String())
	}
	add("type", u.Type)
	s := "pkcs11:" + strings.Join(parts, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+escape(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source="+escape(u.PINSource))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// escape percent-encodes everything outside RFC 7512's unreserved and path characters.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func splitNonEmpty(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
