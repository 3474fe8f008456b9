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

// SendText tells a send aggregate: "sent 8.4 KB to 203.0.113.9:443 (connection opened 41 s
// earlier)"; the connection is told when it is older than the story, the DNS names sent.
func SendText(e EgressCall) string {
	s := "sent " + FormatBytes(e.Bytes) + " to " + e.Endpoint()
	if e.Host != "" {
		s += " (" + e.Host + ")"
	}
	if c := ConnectionText(e); c != "" {
		s += " (" + c + ")"
	}
	if len(e.DNS) > 0 {
		s += " (DNS " + ShortenTo(e.DNS[0], 80)
		if len(e.DNS) > 1 {
			s += " +" + Itoa(len(e.DNS)-1) + " more"
		}
		s += ")"
	}
	return s
}

// ConnectionText says how old the connection of a send aggregate is, when it was not opened in
// the story: "connection opened 41 s earlier", "over a connection opened before tracing".
func ConnectionText(e EgressCall) string {
	switch e.Connected {
	case "earlier":
		if e.AgeMs >= 0 {
			return "connection opened " + FormatAge(e.AgeMs) + " earlier"
		}
		return "over a connection opened earlier"
	case "before_tracing":
		return "over a connection opened before tracing"
	}
	return ""
}

// FormatAge: "350 ms", "41 s", "12 min", "3 h".
func FormatAge(ms int64) string {
	switch {
	case ms < 1000:
		return strconv.FormatInt(ms, 10) + " ms"
	case ms < 120_000:
		return strconv.FormatInt(ms/1000, 10) + " s"
	case ms < 2*3600_000:
		return strconv.FormatInt(ms/60_000, 10) + " min"
	}
	return strconv.FormatInt(ms/3600_000, 10) + " h"
}
