package story

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxArgRunes bounds an argument value told in a narrative or a finding.
const maxArgRunes = 32

func Shorten(s string) string { return ShortenTo(s, maxArgRunes) }

// ShortenTo keeps the first n runes (spaces normalised) and marks the cut with "…".
func ShortenTo(s string, n int) string {
	s = NormalizeSpace(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// FormatBytes: decimal units with one decimal, "2.1 MB".
func FormatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("kMGTP"[exp]) + "B"
}

func Itoa(n int) string { return strconv.Itoa(n) }

func NormalizeSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// SortedKeys are the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
