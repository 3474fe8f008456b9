package exporterkit

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// OneLine returns s (a backend's answer, an SDK's error) as one printable line safe to quote in
// an error or a log: invalid UTF-8 removed, every run of spaces and non-printable characters
// one space, trimmed, and at most limit bytes cut on a character boundary, followed by cutMark
// when it was cut. redact (nil for none) removes secrets; it runs after the invalid bytes are
// removed and again after the spaces are folded, since either can join a secret's pieces, and
// before the cut, which could split one.
func OneLine(s string, limit int, cutMark string, redact func(string) string) string {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	s = redact(strings.ToValidUTF8(s, ""))
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	out := redact(strings.TrimSpace(b.String()))
	if len(out) > limit {
		cut := max(limit, 0)
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + cutMark
	}
	return out
}
