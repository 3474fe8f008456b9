package redact

import (
	"strings"
	"unicode/utf8"
)

// needsEscape reports whether an ASCII byte is a C0 control character that is
// escaped on output. Tab, newline and carriage return are kept: they are
// common in captured text and harmless to every exporter.
func needsEscape(c byte) bool {
	return c < 0x20 && c != '\t' && c != '\n' && c != '\r'
}

// isClean reports whether s can be exported as is: valid UTF-8 without
// escaped control characters. It lets Value skip the copy in the common case.
func isClean(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if needsEscape(c) {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}

// writeSanitized writes s to b as valid UTF-8: each invalid byte becomes
// U+FFFD and each escaped control character becomes `\xNN`.
func writeSanitized(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if needsEscape(c) {
				b.WriteString(s[start:i])
				b.WriteString(`\x`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
				start = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString("\uFFFD")
			start = i + 1
		}
		i += size
	}
	b.WriteString(s[start:])
}
