package redact

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// redactCase is one String test: in is redacted to want with counts c.
type redactCase struct {
	name string
	in   string
	want string
	c    Counts
}

// same builds a case whose input must come out unchanged.
func same(name, in string) redactCase {
	return redactCase{name: name, in: in, want: in}
}

func runStringCases(t *testing.T, cases []redactCase) {
	t.Helper()
	r := New()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, c := r.String(tc.in)
			checkString(t, tc.in, got, tc.want)
			checkCounts(t, c, tc.c)
		})
	}
}

func checkString(t *testing.T, in, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("redacting %q\n got: %q\nwant: %q", in, got, want)
	}
}

func checkCounts(t *testing.T, got, want Counts) {
	t.Helper()
	if got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

func TestCards(t *testing.T) {
	runStringCases(t, []redactCase{
		{"visa spaced", "pay 4111 1111 1111 1111 now", "pay [REDACTED:card] now", Counts{Card: 1}},
		{"visa contiguous", "4111111111111111", MarkerCard, Counts{Card: 1}},
		{"mastercard dashed", "card=5500-0000-0000-0004.", "card=[REDACTED:card].", Counts{Card: 1}},
		{"amex contiguous", "amex 378282246310005", "amex [REDACTED:card]", Counts{Card: 1}},
		{"amex 4-6-5", "amex 3782 822463 10005", "amex [REDACTED:card]", Counts{Card: 1}},
		{"diners 4-6-4", "3056-930902-5904", MarkerCard, Counts{Card: 1}},
		{"discover", "(6011000990139424)", "([REDACTED:card])", Counts{Card: 1}},
		{"visa 13 digits", "old visa 4222222222222", "old visa [REDACTED:card]", Counts{Card: 1}},
		{"19 digits grouped", "4111 1111 1111 1111 003", MarkerCard, Counts{Card: 1}},
		{"18 digits contiguous", "x411111111111111100x", "x[REDACTED:card]x", Counts{Card: 1}},
		{"letters around", "cc4111111111111111exp", "cc[REDACTED:card]exp", Counts{Card: 1}},
		{"two cards", "4111111111111111,5500000000000004", "[REDACTED:card],[REDACTED:card]", Counts{Card: 2}},
		{"card then expiry", "4111 1111 1111 1111 12/27", "[REDACTED:card] 12/27", Counts{Card: 1}},
		{"number before card", "qty 12 4111 1111 1111 1111", "qty 12 [REDACTED:card]", Counts{Card: 1}},
		same("luhn failure", "order 4111111111111112 shipped"),
		same("luhn failure grouped", "ref 1234 5678 1234 5678"),
		same("luhn failure order id", "order_id=1234567812345678"),
		same("inside 25-digit run", "4111111111111111000000000"),
		same("inside 17-digit run", "94111111111111111"),
		same("12 digits", "411111111111"),
		same("20 digits", "41111111111111110000"),
		same("list of short numbers", "sizes 100 200 300 400 500 600"),
		same("double space breaks groups", "4111  1111  1111  1111"),
		same("wrong layout", "411 1111 1111 11111"),
	})
}

func TestSSNs(t *testing.T) {
	runStringCases(t, []redactCase{
		{"dashed", "ssn 123-45-6789.", "ssn [REDACTED:ssn].", Counts{SSN: 1}},
		{"spaced", "SSN: 078 05 1120", "SSN: [REDACTED:ssn]", Counts{SSN: 1}},
		{"two", "123-45-6789/234-56-7890", "[REDACTED:ssn]/[REDACTED:ssn]", Counts{SSN: 2}},
		{"letters around", "id:A123-45-6789B", "id:A[REDACTED:ssn]B", Counts{SSN: 1}},
		same("bare nine digits", "ssn 123456789"),
		same("area 000", "000-12-3456"),
		same("area 666", "666-12-3456"),
		same("area 900", "900-12-3456"),
		same("area 999", "999-12-3456"),
		same("group 00", "123-00-6789"),
		same("serial 0000", "123-45-0000"),
		same("mixed separators", "123-45 6789"),
		same("longer dashed number", "1-123-45-6789"),
		same("followed by dashed group", "123-45-6789-01"),
		same("phone number", "call 555-123-4567"),
		same("date", "2024-06-15"),
	})
}

func TestEmails(t *testing.T) {
	runStringCases(t, []redactCase{
		{"simple", "to alice@example.com", "to [REDACTED:email]", Counts{Email: 1}},
		{"tag and subdomains", "<bob.smith+tag@mail.example.co.uk>", "<[REDACTED:email]>", Counts{Email: 1}},
		{"trailing dot", "mail alice@example.com.", "mail [REDACTED:email].", Counts{Email: 1}},
		{"key kept", "email=alice@example.com&x=1", "email=[REDACTED:email]&x=1", Counts{Email: 1}},
		{"json", `{"to":"a_b-c@x-y.io"}`, `{"to":"[REDACTED:email]"}`, Counts{Email: 1}},
		{"two", "a@b.com, c@d.org", "[REDACTED:email], [REDACTED:email]", Counts{Email: 2}},
		{"numeric label dropped", "a@example.com.123", "[REDACTED:email].123", Counts{Email: 1}},
		// git's scp-like syntax looks exactly like an address; masking the
		// user of an ssh remote is an accepted false positive.
		{"git remote", "git@github.com:org/repo.git", "[REDACTED:email]:org/repo.git", Counts{Email: 1}},
		same("no dot in domain", "user@localhost"),
		same("one-letter tld", "a@b.c"),
		same("numeric tld", "a@1.2"),
		same("lone at", "meet @ noon"),
		same("handle", "@alice said hi"),
		same("decorator", "@app.route"),
		same("empty domain", "alice@"),
		same("empty label", "alice@.com"),
	})
}

func TestTokens(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	runStringCases(t, []redactCase{
		{"authorization bearer", "Authorization: Bearer " + jwt, "Authorization: Bearer [REDACTED:token]", Counts{Token: 1}},
		{"lowercase bearer", "bearer abc123", "bearer [REDACTED:token]", Counts{Token: 1}},
		{"bearer long word", "Bearer abcdefghijklmnopqrstuvwxyz", "Bearer [REDACTED:token]", Counts{Token: 1}},
		{"bearer inner capital", "Bearer abcDEF", "Bearer [REDACTED:token]", Counts{Token: 1}},
		{"header in curl", `curl -H "Authorization: Bearer abc.def" x`, `curl -H "Authorization: Bearer [REDACTED:token]" x`, Counts{Token: 1}},
		{"basic", "Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED:token]", Counts{Token: 1}},
		{"json", `{"Authorization":"Bearer abc def"}`, `{"Authorization":"Bearer [REDACTED:token]"}`, Counts{Token: 1}},
		{"other scheme", "authorization: Token abc", "authorization: Token [REDACTED:token]", Counts{Token: 1}},
		{"no scheme", "Authorization=abc123", "Authorization=[REDACTED:token]", Counts{Token: 1}},
		{"proxy header", "Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: Basic [REDACTED:token]", Counts{Token: 1}},
		same("prose", "the bearer of bad news"),
		same("capitalized prose", "Bearer Bonds were issued"),
		same("bearers", "bearers abc123"),
		same("no token", "Bearer "),
	})
}

func TestAPIKeys(t *testing.T) {
	runStringCases(t, []redactCase{
		{"openai", "key sk-abcdefghijklmnopqrstuvwxyz012345", "key [REDACTED:apikey]", Counts{APIKey: 1}},
		{"openai project", "sk-proj-4fQ9zT2mLr8KxW1nVb7YcP3sHd6JgE0aUo5 x", "[REDACTED:apikey] x", Counts{APIKey: 1}},
		{"anthropic", "'sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz_0123-xyz'", "'[REDACTED:apikey]'", Counts{APIKey: 1}},
		{"aws", "id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED:apikey].", Counts{APIKey: 1}},
		{"aws temporary", "ASIAIOSFODNN7EXAMPLE", MarkerAPIKey, Counts{APIKey: 1}},
		{"github classic", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", MarkerAPIKey, Counts{APIKey: 1}},
		{"github oauth", "gho_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", MarkerAPIKey, Counts{APIKey: 1}},
		{"github fine-grained", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", MarkerAPIKey, Counts{APIKey: 1}},
		{"slack", "xoxb-123456789012-abcdefghij", MarkerAPIKey, Counts{APIKey: 1}},
		{"google", "?key=AIzaSyA1234567890abcdefghijklmnopqrstu&q=1", "?key=[REDACTED:apikey]&q=1", Counts{APIKey: 1}},
		{"api_key=", "api_key=abc123&x=1", "api_key=[REDACTED:apikey]&x=1", Counts{APIKey: 1}},
		{"apikey:", "apikey: abc123", "apikey: [REDACTED:apikey]", Counts{APIKey: 1}},
		{"json api_key", `{"api_key": "abc 123", "n": 1}`, `{"api_key": "[REDACTED:apikey]", "n": 1}`, Counts{APIKey: 1}},
		{"json escaped quote", `{"password":"a\"b"}`, `{"password":"[REDACTED:apikey]"}`, Counts{APIKey: 1}},
		{"json in string", `"{\"password\":\"hunter2\"}"`, `"{\"password\":\"[REDACTED:apikey]\"}"`, Counts{APIKey: 1}},
		{"python dict", "{'secret': 's3cr3t'}", "{'secret': '[REDACTED:apikey]'}", Counts{APIKey: 1}},
		{"token=", "token=xyz&foo=bar", "token=[REDACTED:apikey]&foo=bar", Counts{APIKey: 1}},
		{"password=", "password=hunter2", "password=[REDACTED:apikey]", Counts{APIKey: 1}},
		{"secret=", "secret = s3cr3t;", "secret = [REDACTED:apikey];", Counts{APIKey: 1}},
		{"header", "X-Api-Key: abc123", "X-Api-Key: [REDACTED:apikey]", Counts{APIKey: 1}},
		{"env", "GITHUB_TOKEN=abc123 AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
			"GITHUB_TOKEN=[REDACTED:apikey] AWS_SECRET_ACCESS_KEY=[REDACTED:apikey]", Counts{APIKey: 2}},
		{"yaml", "client_secret: abc\nname: x", "client_secret: [REDACTED:apikey]\nname: x", Counts{APIKey: 1}},
		{"passphrase after colon", "password: correct horse battery  \r\nuser: bob", "password: [REDACTED:apikey]  \r\nuser: bob", Counts{APIKey: 1}},
		{"blank ends value after equals", "password=abc user=bob", "password=[REDACTED:apikey] user=bob", Counts{APIKey: 1}},
		{"ruby hash", `{"password" => "x"}`, `{"password" => "[REDACTED:apikey]"}`, Counts{APIKey: 1}},
		{"scheme in token value", "token: Bearer abc123", "token: Bearer [REDACTED:apikey]", Counts{APIKey: 1}},
		{"flag with space", "mysql --password hunter2 db", "mysql --password [REDACTED:apikey] db", Counts{APIKey: 1}},
		{"flag with equals", "gh --token=abc db", "gh --token=[REDACTED:apikey] db", Counts{APIKey: 1}},
		{"url password", "postgres://app:Sup3r@db:5432/x", "postgres://app:[REDACTED:apikey]@db:5432/x", Counts{APIKey: 1}},
		{"url password with dotted host", "https://u:p@example.com/", "https://u:[REDACTED:apikey]@example.com/", Counts{APIKey: 1}},
		{"unterminated quote", `{"token":"abc`, `{"token":"[REDACTED:apikey]`, Counts{APIKey: 1}},
		{"prefix key as value", "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz", "OPENAI_API_KEY=[REDACTED:apikey]", Counts{APIKey: 1}},
		same("sk- word", "pip install sk-learn"),
		same("sk- inside word", "task-abcdefghijklmnopqrstuvwxyz"),
		same("short aws", "AKIA1234"),
		same("aws too long", "AKIAIOSFODNN7EXAMPLEX"),
		same("short github", "ghp_abc"),
		same("max_tokens", `{"max_tokens": 1024, "prompt_tokens": 5}`),
		same("token_count", "token_count=5 tokens=7 tokenizer=bpe"),
		same("empty value", "password=&user=bob"),
		same("empty value at end", "password="),
		same("empty quoted", `{"password": ""}`),
		same("json null", `{"token": null}`),
		same("python none", "{'token': None, 'x': 1}"),
		same("comparison", "if token == other"),
		same("flag value is flag", "cmd --password --verbose"),
		same("url user only", "ftp://anonymous@ftp.example.com/"),
		same("key", "primary key: id"),
	})
}

func TestMultiple(t *testing.T) {
	in := "user alice@example.com paid with 4111-1111-1111-1111 (ssn 123-45-6789), " +
		"Authorization: Bearer abc123 api_key=k1 and sk-abcdefghijklmnopqrstuvwxyz; " +
		"second card 5500 0000 0000 0004, cc bob@example.org"
	want := "user [REDACTED:email] paid with [REDACTED:card] (ssn [REDACTED:ssn]), " +
		"Authorization: Bearer [REDACTED:token] api_key=[REDACTED:apikey] and [REDACTED:apikey]; " +
		"second card [REDACTED:card], cc [REDACTED:email]"
	got, c := New().String(in)
	checkString(t, in, got, want)
	checkCounts(t, c, Counts{Card: 2, SSN: 1, Email: 2, Token: 1, APIKey: 2})
	if c.Total() != 8 {
		t.Errorf("Total() = %d, want 8", c.Total())
	}
	if n := strings.Count(got, "[REDACTED:"); n != c.Total() {
		t.Errorf("output has %d markers, counts say %d", n, c.Total())
	}
}

// TestOverlap checks that overlapping detections mask the union of their
// bytes and are counted once.
func TestOverlap(t *testing.T) {
	runStringCases(t, []redactCase{
		{"card as password", "password=4111111111111111", "password=[REDACTED:apikey]", Counts{APIKey: 1}},
		{"card in email", "4111111111111111@example.com", MarkerEmail, Counts{Email: 1}},
		{"bearer key", "Bearer sk-abcdefghijklmnopqrstuvwxyz", "Bearer [REDACTED:token]", Counts{Token: 1}},
		{"header key", "Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz", "Authorization: Bearer [REDACTED:token]", Counts{Token: 1}},
	})
}

func TestClean(t *testing.T) {
	runStringCases(t, []redactCase{
		same("empty", ""),
		same("words", "hello world"),
		same("numbers", "42 items, version 1.2.3, 2024-06-15T10:42:07Z, port 5432, pid 31337"),
		same("path", "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
		same("url", "https://example.com/a?b=c&d=e#f"),
		same("unicode", "héllo 世界 ✓"),
	})
}

func TestStringDoesNotCopyClean(t *testing.T) {
	r := New()
	s := strings.Repeat("nothing to see here: 42, x=y. ", 20)
	allocs := testing.AllocsPerRun(100, func() {
		if got, _ := r.String(s); got != s {
			t.Fatal("clean string changed")
		}
	})
	if allocs != 0 {
		t.Errorf("String on clean input allocated %.0f times, want 0", allocs)
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		name      string
		policy    Policy
		raw       string
		truncated bool
		want      string
		c         Counts
		ok        bool
	}{
		{"none", PolicyNone, "4111111111111111", false, "", Counts{}, false},
		{"none truncated", PolicyNone, "abc", true, "", Counts{}, false},
		{"full keeps secrets", PolicyFull, "pw=hunter2 4111111111111111", false, "pw=hunter2 4111111111111111", Counts{}, true},
		{"full escapes", PolicyFull, "a\x00b\x1b[0m\xffc", false, `a\x00b\x1b[0m` + "\uFFFDc", Counts{}, true},
		{"full truncated", PolicyFull, "abc", true, "abc" + MarkerTruncated, Counts{}, true},
		{"redacted", PolicyRedacted, "card 4111111111111111", false, "card [REDACTED:card]", Counts{Card: 1}, true},
		{"empty policy is redacted", "", "card 4111111111111111", false, "card [REDACTED:card]", Counts{Card: 1}, true},
		{"unknown policy is redacted", "everything", "card 4111111111111111", false, "card [REDACTED:card]", Counts{Card: 1}, true},
		{"redacted clean", PolicyRedacted, "hello", false, "hello", Counts{}, true},
		{"empty", PolicyRedacted, "", false, "", Counts{}, true},
		{"nul and invalid utf-8", PolicyRedacted, "\x00card 4111111111111111\xff\xfe", false,
			`\x00card [REDACTED:card]` + "\uFFFD\uFFFD", Counts{Card: 1}, true},
		{"nul separates card", PolicyRedacted, "\x014111111111111111\x01", false,
			`\x01[REDACTED:card]\x01`, Counts{Card: 1}, true},
		{"whitespace kept", PolicyRedacted, "a\tb\nc\r\n", false, "a\tb\nc\r\n", Counts{}, true},
		{"del kept", PolicyRedacted, "a\x7fb", false, "a\x7fb", Counts{}, true},
		{"valid utf-8 kept", PolicyRedacted, "héllo 世界", false, "héllo 世界", Counts{}, true},
		{"truncated", PolicyRedacted, "password=hunt", true, "password=[REDACTED:apikey]" + MarkerTruncated, Counts{APIKey: 1}, true},
		{"truncated 12-digit card", PolicyRedacted, "card 411111111111", true, "card [REDACTED:card]" + MarkerTruncated, Counts{Card: 1}, true},
		{"truncated grouped card", PolicyRedacted, "card 4111 1111 1111 1", true, "card [REDACTED:card]" + MarkerTruncated, Counts{Card: 1}, true},
		{"truncated after separator", PolicyRedacted, "card 4111-1111-1111-", true, "card [REDACTED:card]-" + MarkerTruncated, Counts{Card: 1}, true},
		{"truncated amex prefix", PolicyRedacted, "3782 822463 10", true, MarkerCard + MarkerTruncated, Counts{Card: 1}, true},
		{"truncated 11 digits", PolicyRedacted, "id 41111111111", true, "id 41111111111" + MarkerTruncated, Counts{}, true},
		{"truncated 25 digits", PolicyRedacted, "4111111111111111000000000", true, "4111111111111111000000000" + MarkerTruncated, Counts{}, true},
		{"12 digits not truncated", PolicyRedacted, "card 411111111111", false, "card 411111111111", Counts{}, true},
		{"12 digits before cut", PolicyRedacted, "card 411111111111 x", true, "card 411111111111 x" + MarkerTruncated, Counts{}, true},
		{"truncated ssn prefix", PolicyRedacted, "ssn 123-45-67", true, "ssn [REDACTED:ssn]" + MarkerTruncated, Counts{SSN: 1}, true},
		{"truncated email", PolicyRedacted, "to alice@exam", true, "to [REDACTED:email]" + MarkerTruncated, Counts{Email: 1}, true},
		{"truncated key", PolicyRedacted, "sk-abc", true, MarkerAPIKey + MarkerTruncated, Counts{APIKey: 1}, true},
		{"truncated bearer word", PolicyRedacted, "Bearer abc", true, "Bearer [REDACTED:token]" + MarkerTruncated, Counts{Token: 1}, true},
		{"truncated mid-rune", PolicyRedacted, "h\xc3", true, "h" + MarkerTruncated, Counts{}, true},
		{"truncated mid-rune after digits", PolicyRedacted, "411111111111\xe4\xb8", true, MarkerCard + MarkerTruncated, Counts{Card: 1}, true},
		{"invalid byte at cut kept", PolicyRedacted, "h\xff", true, "h\uFFFD" + MarkerTruncated, Counts{}, true},
	}
	r := New()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, c, ok := r.Value(tc.policy, []byte(tc.raw), tc.truncated)
			checkString(t, tc.raw, got, tc.want)
			checkCounts(t, c, tc.c)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if !utf8.ValidString(got) {
				t.Errorf("output %q is not valid UTF-8", got)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"", PolicyRedacted, false},
		{"none", PolicyNone, false},
		{"redacted", PolicyRedacted, false},
		{"full", PolicyFull, false},
		{"FULL", "", true},
		{" full", "", true},
		{"bogus", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePolicy(tc.in)
			if got != tc.want {
				t.Errorf("ParsePolicy(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParsePolicy(%q) error = %v, want error: %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				msg := err.Error()
				for _, s := range []string{`"` + tc.in + `"`, `"none"`, `"redacted"`, `"full"`} {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q does not mention %s", msg, s)
					}
				}
				if msg != strings.ToLower(msg[:1])+msg[1:] {
					t.Errorf("error %q should start in lower case", msg)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Policy{"", PolicyNone, PolicyRedacted, PolicyFull} {
		if err := p.Validate(); err != nil {
			t.Errorf("Policy(%q).Validate() = %v, want nil", p, err)
		}
	}
	for _, p := range []Policy{"Full", "all", "redact"} {
		if err := p.Validate(); err == nil {
			t.Errorf("Policy(%q).Validate() = nil, want error", p)
		}
	}
}

func TestCountsAdd(t *testing.T) {
	a := Counts{Card: 1, SSN: 2, Email: 3, Token: 4, APIKey: 5}
	got := a.Add(a)
	checkCounts(t, got, Counts{Card: 2, SSN: 4, Email: 6, Token: 8, APIKey: 10})
	if got.Total() != 30 {
		t.Errorf("Total() = %d, want 30", got.Total())
	}
}

// TestGolden redacts a realistic HTTP request body with many kinds of
// secrets and compares with a reviewed golden file.
func TestGolden(t *testing.T) {
	in := readTestdata(t, "dirty.txt")
	got, c := New().String(in)
	golden := filepath.Join("testdata", "dirty.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readTestdata(t, "dirty.golden")
	if got != want {
		t.Errorf("redacted dirty.txt differs from dirty.golden (rerun with -update and review the diff)\n got: %s", got)
	}
	checkCounts(t, c, Counts{Card: 2, SSN: 1, Email: 1, Token: 1, APIKey: 6})

	clean := readTestdata(t, "clean.txt")
	if got, c := New().String(clean); got != clean || c.Total() != 0 {
		t.Errorf("clean.txt changed (%+v):\n%s", c, got)
	}
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdversarialLinear runs inputs built to make a naive scanner quadratic.
// It asserts nothing about time: a quadratic scanner would need ~10^12 steps
// here and the test would time out.
func TestAdversarialLinear(t *testing.T) {
	const n = 1 << 20
	rep := func(s string) string { return strings.Repeat(s, n/len(s)) }
	inputs := map[string]string{
		"token chain":       rep("token="),
		"quoted keys":       rep(`"password":"`),
		"sk chain":          rep("sk-"),
		"bearer chain":      rep("bearer "),
		"at signs":          rep("a@"),
		"dots after at":     "a@" + rep("b."),
		"local part":        rep("a.") + "@",
		"digit groups":      rep("1 "),
		"four-digit groups": rep("4111 "),
		"ssn-like groups":   rep("123-45-"),
		"digits":            rep("4"),
		"flags":             rep("--password "),
		"dashes":            rep("-"),
		"url userinfo":      "x://" + rep("u:") + "@",
		"blanks":            "password" + rep(" ") + "=",
		"escapes":           rep("\x00\xff"),
	}
	r := New()
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			for _, trunc := range []bool{false, true} {
				if out, _, _ := r.Value(PolicyRedacted, []byte(in), trunc); !utf8.ValidString(out) {
					t.Fatal("output is not valid UTF-8")
				}
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	r := New()
	in := readTestdata(t, "dirty.txt")
	want, _ := r.String(in)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got, _ := r.String(in); got != want {
					t.Error("concurrent result differs")
					return
				}
			}
		})
	}
	wg.Wait()
}
