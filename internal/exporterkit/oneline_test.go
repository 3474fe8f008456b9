package exporterkit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOneLine(t *testing.T) {
	redact := func(s string) string { return strings.ReplaceAll(s, "s3cret", "[REDACTED]") }
	tests := []struct {
		name, in string
		limit    int
		mark     string
		want     string
	}{
		{"folds and trims", " a\r\n\tb\x00c  ", 100, "…", "a b c"},
		{"cut on a character", "ééé", 3, "…", "é…"},
		{"no mark", "abcdef", 4, "", "abcd"},
		{"secret", "token s3cret here", 100, "", "token [REDACTED] here"},
		{"secret joined by an invalid byte", "s3\xffcret", 100, "", "[REDACTED]"},
		{"secret joined by folding", "a\ts3cret", 100, "", "a [REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OneLine(tt.in, tt.limit, tt.mark, redact); got != tt.want {
				t.Errorf("OneLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := OneLine("a\nb", 10, "", nil); got != "a b" {
		t.Errorf("without redact: %q", got)
	}
}

func FuzzOneLine(f *testing.F) {
	f.Add("plain", 10)
	f.Add("é\x00\xff\n s3cret\t\tx", 5)
	f.Add(strings.Repeat("日本", 50), 7)
	redact := func(s string) string { return strings.ReplaceAll(s, "s3cret", "[REDACTED]") }
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = limit % 512
		out := OneLine(s, limit, "…", redact)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if len(out) > max(limit, 0)+len("…") {
			t.Fatalf("%d bytes over the limit %d", len(out), limit)
		}
		if strings.Contains(out, "s3cret") || strings.ContainsAny(out, "\n\r\t\x00") {
			t.Fatalf("secret or control character left: %q", out)
		}
	})
}
