package sentinelexporter

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func checkString(t *testing.T, s string) {
	t.Helper()
	b := appendString(nil, s)
	require.True(t, json.Valid(b), "valid JSON for %q: %s", s, b)
	var got string
	require.NoError(t, json.Unmarshal(b, &got))
	want := s
	if !utf8.ValidString(s) {
		// encoding/json's rule: every invalid byte becomes U+FFFD.
		var sb strings.Builder
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			sb.WriteRune(r)
			i += size
		}
		want = sb.String()
	}
	assert.Equal(t, want, got)
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and backslash \`, "new\nline\r\ttab", "\x00\x01\x1f\x7f",
		"<script>&amp;</script>", "héllo wörld ✓ 🤖", "line\u2028sep\u2029para",
		"bad \xff utf8 \xc3", "\xe2\x82", strings.Repeat("a", 1000),
	} {
		checkString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028", "\x00", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}

func TestAppendValue(t *testing.T) {
	m := pcommon.NewMap()
	m.PutStr("s", "x\"y")
	m.PutInt("i", -42)
	m.PutDouble("d", 1.5e-7)
	m.PutDouble("big", 1e21)
	m.PutDouble("nan", math.NaN())
	m.PutDouble("inf", math.Inf(1))
	m.PutDouble("ninf", math.Inf(-1))
	m.PutBool("b", false)
	m.PutEmptyBytes("bytes").FromRaw([]byte("hi"))
	m.PutEmpty("empty")
	nested := m.PutEmptyMap("m")
	nested.PutStr("k\n", "v")
	sl := nested.PutEmptySlice("list")
	sl.AppendEmpty().SetInt(1)
	sl.AppendEmpty().SetEmptyMap().PutBool("deep", true)
	sl.AppendEmpty().SetEmptySlice()

	b := appendMap(nil, m)
	require.True(t, json.Valid(b), string(b))
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, map[string]any{
		"s": "x\"y", "i": float64(-42), "d": 1.5e-7, "big": 1e21,
		"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity",
		"b": false, "bytes": "aGk=", "empty": nil,
		"m": map[string]any{"k\n": "v", "list": []any{float64(1), map[string]any{"deep": true}, []any{}}},
	}, got)
	assert.Equal(t, "{}", string(appendMap(nil, pcommon.NewMap())))
}

func TestAppendTime(t *testing.T) {
	assert.Equal(t, `"2023-11-14T22:13:20.000000001Z"`, string(appendTimestamp(nil, 1_700_000_000_000_000_001)))
	loc := time.FixedZone("X", 3600)
	assert.Equal(t, `"2023-11-14T21:13:20Z"`, string(appendTime(nil, time.Date(2023, 11, 14, 22, 13, 20, 0, loc))))
}

func TestHTMLText(t *testing.T) {
	assert.Equal(t, "502 Bad Gateway 502 Bad Gateway nginx/1.25.3",
		(&sentinelExporter{}).oneLine(htmlText(nginx502), 200))
	assert.Equal(t, "a & b", strings.TrimSpace(htmlText("<p>a &amp; b</p>")))
	assert.Equal(t, "unterminated", strings.TrimSpace(htmlText("unterminated<div")))
}

func TestOneLineRedactsAndCuts(t *testing.T) {
	e := &sentinelExporter{secret: testSecret}
	out := e.oneLine("first\r\nsecond\t"+testSecret+" "+strings.Repeat("é", 300), 50)
	assert.NotContains(t, out, testSecret)
	assert.True(t, strings.HasPrefix(out, "first second [REDACTED] "), out)
	assert.True(t, utf8.ValidString(out))
	assert.LessOrEqual(t, len(out), 50+len("…"))
}

func TestRetryAfter(t *testing.T) {
	h := http.Header{}
	_, ok := retryAfter(h)
	assert.False(t, ok)
	h.Set("Retry-After", "12")
	d, ok := retryAfter(h)
	assert.True(t, ok)
	assert.Equal(t, 12*time.Second, d)
	h.Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	d, ok = retryAfter(h)
	assert.True(t, ok)
	assert.InDelta(t, time.Hour.Seconds(), d.Seconds(), 2)
	h.Set("Retry-After", "soon")
	_, ok = retryAfter(h)
	assert.False(t, ok)
	h.Set("x-ms-retry-after-ms", "250")
	d, ok = retryAfter(h)
	assert.True(t, ok)
	assert.Equal(t, 250*time.Millisecond, d)
}

func TestEntraDetail(t *testing.T) {
	assert.Equal(t, "invalid_client: AADSTS7000215: Invalid client secret provided.",
		entraDetail([]byte(entraError("invalid_client", "AADSTS7000215: Invalid client secret provided."))))
	assert.Equal(t, "unauthorized_client", entraDetail([]byte(`{"error":"unauthorized_client"}`)))
	assert.Empty(t, entraDetail([]byte("<html>")))
}
