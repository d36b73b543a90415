package api

import (
	"strings"
	"testing"
)

type inner struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type outer struct {
	URL   string  `json:"url"`
	Items []inner `json:"items"`
	Skip  string  `json:"-"`
}

func TestDecodeStrict(t *testing.T) {
	var o outer
	if err := decodeStrict([]byte(`{"url":"a","items":[{"type":"dns","value":"x"}],"extra":1}`), &o); err != nil || o.URL != "a" || o.Items[0].Value != "x" {
		t.Fatalf("%+v %v", o, err)
	}
	for body, want := range map[string]string{
		`{"url":"a","url":"b"}`:               `duplicate key "url"`,
		`{"items":[{"type":"a","type":"b"}]}`: `duplicate key "type"`,
		`{"URL":"a"}`:                         `keys are case-sensitive`,
		`{"items":[{"Value":"x"}]}`:           `keys are case-sensitive`,
		`{"url":"a"} {}`:                      "trailing data",
		`{"url":"a"}x`:                        "",
		``:                                    "empty JSON",
		`{"url":1}`:                           `field "url"`,
		strings.Repeat("[", 100) + strings.Repeat("]", 100): "nested too deeply",
		`{"url":"a","\u0075rl":"b"}`:                        `duplicate key "url"`,
		`{"url":"a\x"}`:                                     "bad string",
		"{\"url\":\"a\x01\"}":                               "control character",
		`{"url":"a",}`:                                      "want an object key",
		`{"items":[1,]}`:                                    "unexpected character",
		`{"n":01}`:                                          "want ','",
		`{"n":1.}`:                                          "bad number",
		`{"n":-}`:                                           "bad number",
		`{"n":tru}`:                                         "bad literal",
		`{"url":"a"`:                                        "unexpected end",
		"{\"url\":\"\xff\"}":                                "invalid UTF-8",
	} {
		var o outer
		err := decodeStrict([]byte(body), &o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("decodeStrict(%.40q) = %v, want %q", body, err, want)
		}
	}
}
