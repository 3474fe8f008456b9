// Package redact masks sensitive data in argument values captured from traced
// programs (function arguments read from process memory by eBPF, command
// lines, URLs) before anything leaves the collector.
//
// Captured bytes are attacker-controlled: they can be huge, binary and invalid
// UTF-8. Every scanner in this package is therefore hand-written, works on
// bytes, looks only at ASCII, and runs in time linear in the input: each
// detector is triggered by a cheap byte test (a digit, '@', ':', '=', a letter
// at the start of a word) and either fails after a bounded look or consumes
// the bytes it matched, so no byte is rescanned an unbounded number of times.
// Detection never uses regular expressions.
//
// The package has no mutable package-level state; a [Redactor] is safe for
// concurrent use.
package redact

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Policy is the per-argument capture policy from the user's config.
type Policy string

// Capture policies. The zero value "" means PolicyRedacted, the default.
const (
	// PolicyNone captures nothing: the value is not exported at all, only
	// its length (which the caller has).
	PolicyNone Policy = "none"
	// PolicyRedacted exports the value with sensitive data masked. It is the
	// default because arguments routinely carry credentials.
	PolicyRedacted Policy = "redacted"
	// PolicyFull exports the value as captured, only made valid UTF-8.
	PolicyFull Policy = "full"
)

// ParsePolicy parses a policy name from the user's config. The empty string
// selects the default, PolicyRedacted. Names are case-sensitive, matching the
// lowercase spelling used everywhere else in the config.
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return PolicyRedacted, nil
	}
	p := Policy(s)
	if err := p.Validate(); err != nil {
		return "", err
	}
	return p, nil
}

// Validate reports whether p is a known policy. The empty policy is accepted
// because it is the zero value of a config field and means PolicyRedacted.
func (p Policy) Validate() error {
	switch p {
	case "", PolicyNone, PolicyRedacted, PolicyFull:
		return nil
	}
	return fmt.Errorf("invalid capture policy %q: valid policies are %q, %q and %q",
		string(p), PolicyNone, PolicyRedacted, PolicyFull)
}

// Counts is the number of replacements made, per kind of sensitive data.
type Counts struct {
	Card, SSN, Email, Token, APIKey, IBAN, PrivateKey int
}

// Total returns the number of replacements of all kinds.
func (c Counts) Total() int {
	return c.Card + c.SSN + c.Email + c.Token + c.APIKey + c.IBAN + c.PrivateKey
}

// Add returns the sum of c and o, for aggregating counts over the arguments of
// one call.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Card:       c.Card + o.Card,
		SSN:        c.SSN + o.SSN,
		Email:      c.Email + o.Email,
		Token:      c.Token + o.Token,
		APIKey:     c.APIKey + o.APIKey,
		IBAN:       c.IBAN + o.IBAN,
		PrivateKey: c.PrivateKey + o.PrivateKey,
	}
}

// Markers that replace each kind of sensitive data. They contain no digits and
// no '@', so a redacted string never looks like a card, SSN or email again.
const (
	MarkerCard      = "[REDACTED:card]"
	MarkerSSN       = "[REDACTED:ssn]"
	MarkerEmail     = "[REDACTED:email]"
	MarkerToken     = "[REDACTED:token]"
	MarkerAPIKey    = "[REDACTED:apikey]"
	MarkerIBAN      = "[REDACTED:iban]"
	MarkerKey       = "[REDACTED:privatekey]"
	MarkerTruncated = "…[truncated]"
)

// Redactor masks sensitive data. It holds no state today (every call is
// independent) but is a type so that options can be added without changing
// callers. It is safe for concurrent use, and a nil *Redactor works too.
type Redactor struct{}

// New returns a Redactor with the built-in detectors.
func New() *Redactor { return &Redactor{} }

// String returns s with every sensitive match replaced by a marker, and the
// count of replacements per kind. s is returned unchanged (without copying)
// when nothing matches. String does not fix invalid UTF-8 or control bytes;
// use Value for raw captured data.
func (r *Redactor) String(s string) (string, Counts) {
	spans := scan(s, false)
	if len(spans) == 0 {
		return s, Counts{}
	}
	var b strings.Builder
	b.Grow(len(s) + 16*len(spans))
	c := render(&b, s, spans, false)
	return b.String(), c
}

// Value applies a policy to raw captured bytes. truncated says the capture was
// cut at the kernel bound; the output then ends with MarkerTruncated so nobody
// mistakes it for the whole value.
//
// The result is always valid UTF-8: invalid bytes become U+FFFD, and NUL and
// the other C0 control characters except \t, \n and \r become an escape such
// as `\x00`. Backslashes are not escaped, so the escape form is for people
// reading the value, not for decoding it back.
//
// ok is false for PolicyNone: there is nothing to export. An unknown policy is
// treated as PolicyRedacted so a config mistake never exports more than the
// default.
func (r *Redactor) Value(p Policy, raw []byte, truncated bool) (value string, c Counts, ok bool) {
	if p == PolicyNone {
		return "", Counts{}, false
	}
	s := string(raw)
	if truncated {
		s = trimPartialRune(s)
	}
	var spans []span
	if p != PolicyFull {
		spans = scan(s, truncated)
	}
	if len(spans) == 0 && !truncated && isClean(s) {
		return s, Counts{}, true
	}
	var b strings.Builder
	b.Grow(len(s) + 16*len(spans) + len(MarkerTruncated))
	c = render(&b, s, spans, true)
	if truncated {
		b.WriteString(MarkerTruncated)
	}
	return b.String(), c, true
}

// render writes s with spans replaced by markers, sanitizing the text between
// them when sanitize is set. Spans must be sorted and disjoint.
func render(b *strings.Builder, s string, spans []span, sanitize bool) Counts {
	var c Counts
	prev := 0
	for _, sp := range spans {
		writeText(b, s[prev:sp.start], sanitize)
		b.WriteString(sp.kind.marker())
		sp.kind.count(&c)
		prev = sp.end
	}
	writeText(b, s[prev:], sanitize)
	return c
}

func writeText(b *strings.Builder, s string, sanitize bool) {
	if sanitize {
		writeSanitized(b, s)
	} else {
		b.WriteString(s)
	}
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of a
// truncated capture: the bound cut a valid character in half, and showing
// U+FFFD for its first bytes would only be noise before the truncation
// marker. It also makes "digits at the cut point" checks see the digits.
func trimPartialRune(s string) string {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(s); k++ {
		c := s[len(s)-k]
		if c < utf8.RuneSelf {
			return s
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRuneInString(s[len(s)-k:]) {
				return s[:len(s)-k]
			}
			return s
		}
	}
	return s
}

// kind is the kind of sensitive data a span holds.
type kind uint8

const (
	kindCard kind = iota
	kindSSN
	kindEmail
	kindToken
	kindAPIKey
	kindIBAN
	kindPrivateKey
)

func (k kind) marker() string {
	switch k {
	case kindCard:
		return MarkerCard
	case kindSSN:
		return MarkerSSN
	case kindEmail:
		return MarkerEmail
	case kindToken:
		return MarkerToken
	case kindIBAN:
		return MarkerIBAN
	case kindPrivateKey:
		return MarkerKey
	default:
		return MarkerAPIKey
	}
}

func (k kind) count(c *Counts) {
	switch k {
	case kindCard:
		c.Card++
	case kindSSN:
		c.SSN++
	case kindEmail:
		c.Email++
	case kindToken:
		c.Token++
	case kindIBAN:
		c.IBAN++
	case kindPrivateKey:
		c.PrivateKey++
	default:
		c.APIKey++
	}
}

// span is a byte range [start, end) of the input to replace by a marker.
type span struct {
	start, end int
	kind       kind
	// prio breaks ties between spans covering the same bytes: the most
	// specific detector (lowest prio) names the marker.
	prio uint8
}

// Priorities, most specific first. Generic key=value values come last: a
// password that is an email address is better reported as an email.
const (
	prioCard uint8 = iota
	prioPrivateKey
	prioIBAN
	prioSSN
	prioEmail
	prioKey
	prioBearer
	prioGeneric
)

// resolve sorts spans and merges overlapping ones. Overlaps are merged into
// the earliest span (extending it) rather than dropped: dropping the later
// span would leak its tail. Merged spans count once.
func resolve(spans []span) []span {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.start != b.start {
			return a.start - b.start
		}
		if a.end != b.end {
			return b.end - a.end // longer first
		}
		return int(a.prio) - int(b.prio)
	})
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start < last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		out = append(out, sp)
	}
	return out
}
