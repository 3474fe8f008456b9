package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValue checks the invariants that must hold for any captured bytes:
// Value never panics, always returns valid UTF-8, exports nothing for
// PolicyNone, and with PolicyRedacted never lets a Luhn-valid 16-digit card
// number present in the input (as a whole run of digits) through.
func FuzzValue(f *testing.F) {
	for _, s := range []string{
		"",
		"4111111111111111",
		"pay 4111 1111 1111 1111 now",
		"\x004111111111111111\xff",
		"\x014111111111111111",
		"ssn 123-45-6789 mail a@b.com Bearer abc123 api_key=x sk-abcdefghijklmnopqrstuvwxyz",
		`{"password":"a\"b","Authorization":"Basic Zm9v"}`,
		"https://u:p@h/ --token t",
		"héllo\xc3",
		readTestdata(f, "dirty.txt"),
		readTestdata(f, "clean.txt"),
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	r := New()
	f.Fuzz(func(t *testing.T, raw []byte, truncated bool) {
		orig := string(raw)
		for _, p := range []Policy{PolicyNone, PolicyRedacted, PolicyFull} {
			out, c, ok := r.Value(p, raw, truncated)
			if string(raw) != orig {
				t.Fatal("Value modified its input")
			}
			if !utf8.ValidString(out) {
				t.Fatalf("policy %s: output %q is not valid UTF-8", p, out)
			}
			if p == PolicyNone {
				if ok || out != "" || c.Total() != 0 {
					t.Fatalf("policy none exported %q, %+v, %v", out, c, ok)
				}
				continue
			}
			if !ok {
				t.Fatalf("policy %s: ok = false", p)
			}
			if truncated && !strings.HasSuffix(out, MarkerTruncated) {
				t.Fatalf("policy %s: truncated output %q lacks the marker", p, out)
			}
			if p != PolicyRedacted {
				continue
			}
			cards := luhnRuns(orig, 16)
			if len(cards) == 0 {
				continue
			}
			for _, run := range digitRuns(out) {
				if cards[run] {
					t.Fatalf("card %s survived redaction: %q -> %q", run, orig, out)
				}
			}
		}
		// String must cope with the raw bytes too.
		r.String(orig)
	})
}

// luhnRuns returns the maximal runs of exactly n digits in s that pass Luhn.
func luhnRuns(s string, n int) map[string]bool {
	m := map[string]bool{}
	eachDigitRun(s, func(i, j int) {
		if j-i == n && luhn(s[i:j]) {
			m[s[i:j]] = true
		}
	})
	return m
}

// eachDigitRun calls f with the bounds [i, j) of every maximal run of digits in s.
func eachDigitRun(s string, f func(i, j int)) {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		f(i, j)
		i = j
	}
}

// digitRuns returns the maximal runs of digits in a Value output, except
// those that start inside a `\xNN` escape: the escape's own digits join the
// digits after it, so they are not digits of the input.
func digitRuns(s string) []string {
	var runs []string
	eachDigitRun(s, func(i, j int) {
		if i < 2 || s[i-2:i] != `\x` {
			runs = append(runs, s[i:j])
		}
	})
	return runs
}
