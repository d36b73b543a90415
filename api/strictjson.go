package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// decodeStrict decodes JSON into v the way a protocol that signs its messages
// needs: duplicate keys anywhere, trailing data, and keys that differ only in
// case from a field name of v are errors. encoding/json alone keeps the last of
// duplicate keys, matches keys case-insensitively and ignores what follows the
// first value, each a way for two parsers to read one message differently.
// Unknown keys are ignored, as RFC 8555 asks of servers.
func decodeStrict(data []byte, v any) error {
	sc := scanner{data: data, names: fieldNames(reflect.TypeOf(v))}
	sc.skipSpace()
	if sc.pos == len(data) {
		return errors.New("empty JSON")
	}
	if err := sc.value(0); err != nil {
		return err
	}
	sc.skipSpace()
	if sc.pos != len(data) {
		return errors.New("trailing data after the JSON value")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return fmt.Errorf("field %q: want %s, got JSON %s", ute.Field, ute.Type, ute.Value)
		}
		return err
	}
	return nil
}

// maxDepth bounds nesting, so that a hostile body cannot exhaust the stack.
const maxDepth = 32

// scanner checks JSON syntax in one pass without building values: it refuses
// duplicate object keys, and keys equal to a known field name only when case
// is ignored.
type scanner struct {
	data  []byte
	pos   int
	names map[string]string // foldKey(field name) -> field name
}

func (s *scanner) errorf(format string, a ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", s.pos, fmt.Sprintf(format, a...))
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) value(depth int) error {
	if depth > maxDepth {
		return errors.New("JSON nested too deeply")
	}
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.errorf("unexpected end")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return s.errorf("unexpected character %q", s.data[s.pos])
}

func (s *scanner) object(depth int) error {
	s.pos++ // {
	seen := map[string]bool{}
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.errorf("want an object key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if name, ok := s.names[foldKey(key)]; ok && name != key {
			return fmt.Errorf("key %q: keys are case-sensitive (the field is %q)", key, name)
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.errorf("want ':'")
		}
		s.pos++
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errorf("unexpected end in object")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

func (s *scanner) array(depth int) error {
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errorf("unexpected end in array")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or ']'")
		}
	}
}

// str reads a string and returns its value; only strings with escapes are
// decoded through encoding/json.
func (s *scanner) str() (string, error) {
	start := s.pos
	s.pos++ // opening quote
	escaped := false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			raw := s.data[start:s.pos]
			// Checked before unescaping too: encoding/json would turn bad
			// bytes beside an escape into U+FFFD rather than refuse them.
			if !utf8.Valid(raw) {
				return "", s.errorf("invalid UTF-8 in a string")
			}
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var out string
			if err := json.Unmarshal(raw, &out); err != nil {
				return "", s.errorf("bad string: %v", err)
			}
			return out, nil
		case c == '\\':
			escaped = true
			s.pos += 2
		case c < 0x20:
			return "", s.errorf("control character in a string")
		default:
			s.pos++
		}
	}
	return "", s.errorf("unterminated string")
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return s.errorf("bad literal")
	}
	s.pos += len(word)
	return nil
}

func (s *scanner) number() error {
	start := s.pos
	if s.data[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.data) && s.data[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		return s.errorf("bad number")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	if s.pos == start {
		return s.errorf("bad number")
	}
	return nil
}

var namesCache sync.Map // reflect.Type -> map[string]string

// fieldNames maps the case-folded JSON names of t's struct fields, nested
// structs included, to the names themselves.
func fieldNames(t reflect.Type) map[string]string {
	if v, ok := namesCache.Load(t); ok {
		return v.(map[string]string)
	}
	names := map[string]string{}
	collectNames(t, names, map[reflect.Type]bool{})
	namesCache.Store(t, names)
	return names
}

func collectNames(t reflect.Type, names map[string]string, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		names[foldKey(name)] = name
		collectNames(f.Type, names, seen)
	}
}

// foldKey maps s to one representative of the strings equal to it under
// Unicode simple case folding, the matching encoding/json uses for field
// names: "Status", "STATUS" and "statu\u017f" (long s) all fold alike, as do
// "kid" and "\u212aid" (Kelvin sign). strings.ToLower would miss the long s,
// and a key "statu\u017f" beside "status" would be read by encoding/json as
// a second status.
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}
