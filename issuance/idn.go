package issuance

import (
	"fmt"
	"unicode"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// checkALabel says why an "xn--" label (already lower case) is not a valid
// IDNA2008 A-label (RFC 5890 2.3.2.1, RFC 5891 5.4), or returns nil. A
// label that only looks like one would let an applicant get a certificate for
// a name no IDN-aware software displays as the name it is: a label that
// decodes to something not in NFC, to code points IDNA2008 does not permit,
// or that another encoding of the same U-label would spell differently.
func checkALabel(l string) error {
	// idna.Punycode decodes without any validation, so each failure below can
	// be named for what it is.
	u, err := idna.Punycode.ToUnicode(l)
	switch {
	case err != nil && u != l && isASCII(u):
		return fmt.Errorf("label %q decodes to the ASCII label %q: it is not an A-label", l, u)
	case err != nil:
		return fmt.Errorf("label %q is not valid Punycode", l)
	case u == "":
		return fmt.Errorf("label %q is an empty A-label", l)
	}
	if !norm.NFC.IsNormalString(u) {
		return fmt.Errorf("label %q decodes to %+q, which is not in Unicode NFC", l, u)
	}
	// What a browser makes of the U-label (UTS 46 mapping: case folding,
	// compatibility forms, ignored code points) must be this very label;
	// otherwise two A-labels would name one host ("xn--bcher-2pa" holds an
	// upper-case Ü and stands for "xn--bcher-kva").
	if back, err := idna.Lookup.ToASCII(u); err == nil && back != l {
		return fmt.Errorf("label %q decodes to %+q, which converts back to %q, not to the same A-label", l, u, back)
	}
	for _, r := range u {
		if !idna2008Permitted(r) {
			return fmt.Errorf("label %q holds the code point %U, which IDNA2008 does not permit", l, r)
		}
	}
	// The Registration profile adds what a code point table cannot say: the
	// hyphen rules, the joiner contexts and the Bidi rule (RFC 5893).
	if _, err := idna.Registration.ToUnicode(l); err != nil {
		return fmt.Errorf("label %q is not a valid IDNA2008 label: %v", l, err)
	}
	if back, err := idna.Registration.ToASCII(u); err != nil || back != l {
		return fmt.Errorf("label %q decodes to %+q, which does not convert back to the same A-label", l, u)
	}
	return nil
}

// idna2008Permitted approximates the derived property of RFC 5892 for a code
// point of a U-label: PVALID, CONTEXTJ or CONTEXTO (the contexts themselves are
// the Registration profile's to check). golang.org/x/net/idna follows UTS 46,
// which also accepts the symbols and punctuation IDNA2008 disallows (its "NV8"
// code points, emoji among them); RFC 5892 2.1 permits letters, marks and
// digits (LetterDigits), plus the exceptions of its section 2.6.
func idna2008Permitted(r rune) bool {
	switch r {
	// Exceptions, PVALID (RFC 5892 2.6): sharp s, final sigma, Arabic
	// signs, Tibetan mark, ideographic zero.
	case 0x00DF, 0x03C2, 0x06FD, 0x06FE, 0x0F0B, 0x3007:
		return true
	// Exceptions, CONTEXTO: middle dot, Greek keraia, Hebrew geresh and
	// gershayim, Katakana middle dot. And CONTEXTJ: ZWNJ, ZWJ.
	case 0x00B7, 0x0375, 0x05F3, 0x05F4, 0x30FB, 0x200C, 0x200D:
		return true
	// Exceptions, DISALLOWED: tatweel, NKo lajanyalan, Hangul tone marks,
	// vertical kana repeat marks, vertical ideographic iteration mark.
	case 0x0640, 0x07FA, 0x302E, 0x302F, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303B:
		return false
	case '-':
		return true
	}
	// Upper-case letters are not LetterDigits here: IDNA2008 permits only
	// what case folding leaves, and an A-label encodes the lower case.
	return unicode.In(r, unicode.Ll, unicode.Lo, unicode.Lm, unicode.Mn, unicode.Mc, unicode.Nd)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
