package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
)

// fuzzPayload stands for an ACME payload: nested objects, arrays, a pointer,
// names with letters whose Unicode case folding leaves ASCII (s, k).
type fuzzPayload struct {
	Identifiers []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identifiers"`
	Contact     []string `json:"contact"`
	Status      string   `json:"status"`
	KID         string   `json:"kid"`
	TermsAgreed *bool    `json:"termsOfServiceAgreed"`
	Reason      int      `json:"reason"`
	Ext         struct {
		Key string `json:"key"`
	} `json:"externalAccountBinding"`
}

var strictJSONSeeds = []string{
	`{"identifiers":[{"type":"dns","value":"example.com"}]}`,
	`{"contact":["mailto:a@example.com"],"termsOfServiceAgreed":true}`,
	`{"status":"deactivated"}`,
	`{"reason":4,"kid":"x","externalAccountBinding":{"key":"k"}}`,
	`{"url":"a","url":"b"}`,
	`{"status":"a","\u0073tatus":"b"}`,
	`{"Status":"x"}`,
	`{"status":"x"} {}`,
	`[1,2.5e10,-0,true,false,null,"\u00e9\n"]`,
	`{"a":{"b":{"c":[[[[{}]]]]}}}`,
	"{\"status\":\"\\n\xff\"}",
	`{"statu` + "\u017f" + `":"x"}`,
	``,
	` `,
	`{"reason":1e400}`,
}

// FuzzDecodeStrict: decodeStrict never panics, and what it accepts every
// independent reading agrees with: encoding/json finds it valid; a token walk
// finds no duplicate key in any object (after unescaping) and nothing after
// the value; no key is a field name in another case under Unicode folding
// (what encoding/json would match); the text is valid UTF-8 (the unescaped
// strings are checked, so escaped ones must be too); and the decoded value
// survives a round trip through json.Marshal and decodeStrict unchanged.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range strictJSONSeeds {
		f.Add([]byte(s))
	}
	names := map[string]bool{}
	for _, n := range fieldNames(reflect.TypeOf(&fuzzPayload{})) {
		names[n] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzPayload
		errStruct := decodeStrict(data, &v)
		// Into a RawMessage: the syntax checks alone, with no conversion of
		// numbers that a struct with no such field would skip.
		var m json.RawMessage
		errAny := decodeStrict(data, &m)
		if errAny != nil {
			if errStruct == nil {
				t.Fatalf("accepted into a struct but not as raw JSON: %v", errAny)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted %q, which encoding/json finds invalid", data)
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted %q, which is not valid UTF-8", data)
		}
		keys, err := objectKeys(data)
		if err != nil {
			t.Fatalf("accepted %q: %v", data, err)
		}
		if errStruct != nil {
			return
		}
		for _, k := range keys {
			for n := range names {
				if k != n && strings.EqualFold(k, n) {
					t.Fatalf("accepted key %q, which encoding/json matches to field %q", k, n)
				}
			}
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var w fuzzPayload
		if err := decodeStrict(again, &w); err != nil {
			t.Fatalf("re-encoded %s refused: %v", again, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip changed the value: %+v != %+v", v, w)
		}
	})
}

// objectKeys walks JSON with encoding/json's tokenizer, refusing duplicate
// keys within one object and data after the value, and returns every key.
func objectKeys(data []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keys are the point, and 1e400 is valid JSON
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next string token in this object is a key
	}
	var stack []*frame
	var keys []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return nil, errors.New("unterminated value")
			}
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.seen[k] {
				return nil, errors.New("duplicate key " + k)
			}
			top.seen[k] = true
			keys = append(keys, k)
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // this token is the member's value (or opens it)
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, seen: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 && dec.More() {
			return nil, errors.New("data after the value")
		}
	}
}

// FuzzParseJWS: the parsing half of verifyPOST (the outer flattened JWS, the
// protected header, the jwk, and go-jose's parse of the compact form) never
// panics; an accepted outer JWS has only the three allowed members, and
// re-encoding it gives the same three members back.
func FuzzParseJWS(f *testing.F) {
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRjmosN4Ivb5CJAVg1bFeMrX9VnNcGXP1svw3yw"}`
	for _, h := range []string{
		`{"alg":"ES256","nonce":"abc","url":"https://ca.example/acme/new-account","jwk":` + jwk + `}`,
		`{"alg":"RS256","nonce":"abc","url":"https://ca.example/acme/new-order","kid":"https://ca.example/acme/acct/1"}`,
		`{"alg":"none","b64":false,"crit":["b64"]}`,
		`{"alg":"ES256","jwk":{"kty":"oct","k":"c2VjcmV0"}}`,
		`{"alg":"ES256","alg":"HS256"}`,
	} {
		f.Add([]byte(`{"protected":"` + b64([]byte(h)) + `","payload":"` + b64([]byte(`{"status":"x"}`)) + `","signature":"` + b64([]byte("sig")) + `"}`))
		f.Add([]byte(`{"protected":"` + b64([]byte(h)) + `","payload":"","signature":"AAAA"}`))
	}
	for _, s := range []string{
		`{"protected":"e30","payload":"","signature":"","header":{"alg":"none"}}`,
		`{"signatures":[{"protected":"e30","signature":""}],"payload":""}`,
		`{"protected":"e30.e30","payload":"","signature":"x"}`,
		`{"protected":1,"payload":"","signature":""}`,
		`e30.e30.e30`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		jws, err := parseFlattened(body)
		if err != nil {
			return
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(body, &members); err != nil {
			t.Fatalf("accepted a body encoding/json cannot read: %v", err)
		}
		for k := range members {
			if k != "protected" && k != "payload" && k != "signature" {
				t.Fatalf("accepted member %q", k)
			}
		}
		again, _ := json.Marshal(jws)
		back, err := parseFlattened(again)
		if err != nil || *back != *jws {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", jws, again, back, err)
		}
		// What verifyPOST does next with the members, short of a key lookup and
		// a signature check.
		headerJSON, err := base64.RawURLEncoding.DecodeString(jws.Protected)
		if err != nil {
			return
		}
		var h protectedHeader
		if err := decodeStrict(headerJSON, &h); err != nil {
			return
		}
		if len(h.JWK) > 0 {
			var key jose.JSONWebKey
			if err := key.UnmarshalJSON(h.JWK); err == nil && key.Key != nil {
				_ = algMatchesKey(h.Alg, &key)
			}
		}
		for _, alg := range allowedAlgs {
			jose.ParseSigned(jws.Protected+"."+jws.Payload+"."+jws.Signature, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
		}
	})
}

var fuzzNonceKey = nonceKey(bytes.Repeat([]byte{0x4b}, 32))

// FuzzNonceRedeem: of any string sent as a nonce, the shared-key and local
// nonce services accept only a nonce they issued, spelled exactly as issued,
// and only once.
func FuzzNonceRedeem(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	shared := &Nonces{key: fuzzNonceKey, lifetime: time.Hour, now: func() time.Time { return now }}
	local := &LocalNonces{key: fuzzNonceKey, lifetime: time.Hour, now: func() time.Time { return now }, used: make([]uint64, localNonceWindow/64)}
	// The issued nonces are sealed here from fixed bodies rather than by New,
	// whose random bits would differ in every fuzzing worker process.
	issued := map[string]map[string]bool{"shared": {}, "local": {}}
	for i := range 4 {
		body := make([]byte, nonceBodyLen)
		binary.BigEndian.PutUint64(body, uint64(now.Add(time.Minute).Unix()))
		body[nonceBodyLen-1] = byte(i)
		s := fuzzNonceKey.seal(body)
		lbody := make([]byte, localNonceBodyLen)
		binary.BigEndian.PutUint64(lbody, uint64(i))
		binary.BigEndian.PutUint64(lbody[8:], uint64(now.Add(time.Minute).Unix()))
		l := fuzzNonceKey.seal(lbody)
		local.next = uint64(i) + 1
		issued["shared"][s], issued["local"][l] = true, true
		f.Add(s)
		f.Add(l)
		f.Add(s[:len(s)-1] + "B")
		f.Add(l + "\n")
	}
	for _, s := range []string{"", "=", "AAAA", strings.Repeat("A", 43), strings.Repeat("_", 200), "not base64!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, nonce string) {
		// Fresh redemption state each run, so that a run does not depend on
		// the ones before it.
		shared.store = &memNonces{used: map[string]bool{}}
		clear(local.used)
		for name, src := range map[string]NonceSource{"shared": shared, "local": local} {
			err := src.Redeem(context.Background(), nonce)
			if err == nil && !issued[name][nonce] {
				t.Fatalf("%s: accepted %q, which was never issued", name, nonce)
			}
			if err == nil {
				if err := src.Redeem(context.Background(), nonce); err == nil {
					t.Fatalf("%s: accepted %q twice", name, nonce)
				}
			}
		}
	})
}
