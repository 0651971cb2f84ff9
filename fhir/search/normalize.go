package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Normalize folds s for string search: compatibility decomposition (NFKD)
// with the combining marks removed, lower case, and the letters that do not
// decompose spelled out (ß→ss, æ→ae, ø→o, œ→oe, ł→l, đ/ð→d, þ→th, ı→i,
// ĳ→ij). "Ærø Straße" and "aero strasse" normalise alike; so do "Müller"
// and "muller". Whitespace and punctuation are kept as they are.
func Normalize(s string) string {
	// Fast path: ASCII without upper case is its own normal form.
	ascii, upper := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		b := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		return string(b)
	}
	d := norm.NFKD.String(s)
	var b strings.Builder
	b.Grow(len(d))
	for _, r := range d {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		if r == utf8.RuneError {
			continue
		}
		if sp, ok := foldSpecial[r]; ok {
			b.WriteString(sp)
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// foldSpecial spells out letters that have no canonical decomposition.
var foldSpecial = map[rune]string{
	'ß': "ss", 'ẞ': "ss",
	'æ': "ae", 'Æ': "ae",
	'ø': "o", 'Ø': "o",
	'œ': "oe", 'Œ': "oe",
	'ł': "l", 'Ł': "l",
	'đ': "d", 'Đ': "d",
	'ð': "d", 'Ð': "d",
	'þ': "th", 'Þ': "th",
	'ı': "i",
	'ĳ': "ij", 'Ĳ': "ij",
	'ŀ': "l", 'Ŀ': "l",
	'ħ': "h", 'Ħ': "h",
	'ŧ': "t", 'Ŧ': "t",
}
