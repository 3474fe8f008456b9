package match

import (
	"errors"
	"strings"
)

// Path is a compiled path pattern: "*" (and "**") match any run of characters, "/"
// included, so "*/customers.*" matches a customers file at any depth; "?" matches one
// character; everything else matches itself. There is no escaping and no character class.
type Path struct {
	text  string
	parts []string // literal parts between stars, "?" kept inside (matched by matchLiteral)
	lead  bool     // the pattern starts with a star
	trail bool     // the pattern ends with a star
}

func Compile(s string) (Path, error) {
	if strings.TrimSpace(s) == "" {
		return Path{}, errors.New("empty pattern")
	}
	p := Path{text: s, lead: strings.HasPrefix(s, "*"), trail: strings.HasSuffix(s, "*")}
	for _, part := range strings.Split(s, "*") {
		if part != "" {
			p.parts = append(p.parts, part)
		}
	}
	return p, nil
}

func MustCompile(list []string) []Path {
	out := make([]Path, 0, len(list))
	for _, s := range list {
		if p, err := Compile(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Match reports whether the whole of s matches the pattern.
func (p Path) Match(s string) bool {
	if len(p.parts) == 0 {
		return p.lead // "*" matches everything
	}
	parts := p.parts
	if !p.lead {
		if !prefixMatch(s, parts[0]) {
			return false
		}
		s = s[len(parts[0]):]
		parts = parts[1:]
		if len(parts) == 0 {
			return p.trail || s == ""
		}
	}
	last := len(parts) - 1
	for i, part := range parts {
		if i == last && !p.trail {
			return len(s) >= len(part) && prefixMatch(s[len(s)-len(part):], part)
		}
		j := indexMatch(s, part)
		if j < 0 {
			return false
		}
		s = s[j+len(part):]
	}
	return true
}

func prefixMatch(s, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		if lit[i] != '?' && lit[i] != s[i] {
			return false
		}
	}
	return true
}

func indexMatch(s, lit string) int {
	if !strings.Contains(lit, "?") {
		return strings.Index(s, lit)
	}
	for i := 0; i+len(lit) <= len(s); i++ {
		if prefixMatch(s[i:], lit) {
			return i
		}
	}
	return -1
}

func Any(patterns []Path, s string) (string, bool) {
	for _, p := range patterns {
		if p.Match(s) {
			return p.text, true
		}
	}
	return "", false
}

// Generalize turns a file path into the pattern a profile learns: a file name whose stem
// looks like an identifier (UUID, long hex or random token) becomes "*" (keeping its
// extension), then every run of digits becomes "*", and runs of stars collapse to one.
func Generalize(p string) string {
	dir, base := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i+1], p[i+1:]
	}
	stem, ext := base, ""
	if i := strings.IndexByte(base, '.'); i > 0 {
		stem, ext = base[:i], base[i:]
	}
	if looksLikeID(stem) {
		base = "*" + ext
	}
	var b strings.Builder
	b.Grow(len(p))
	star := false
	for _, r := range dir + base {
		if r >= '0' && r <= '9' || r == '*' {
			if !star {
				b.WriteByte('*')
				star = true
			}
			continue
		}
		star = false
		b.WriteRune(r)
	}
	return b.String()
}

// looksLikeID: a UUID, 8+ hex characters with a digit, or 16+ letters and digits with both.
func looksLikeID(s string) bool {
	if len(s) < 8 {
		return false
	}
	hex, digits, letters, other := 0, 0, 0, 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
			hex++
		case r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F':
			letters++
			hex++
		case r >= 'g' && r <= 'z' || r >= 'G' && r <= 'Z':
			letters++
		case r == '-' || r == '_':
			other++
		default:
			return false
		}
	}
	if digits == 0 {
		return false
	}
	if hex+other == len(s) && hex >= 8 {
		return true
	}
	return len(s) >= 16 && letters > 0 && other <= 4
}
