package redact

import "strings"

// scanner collects the spans of sensitive data in one input.
//
// run walks the input once. Each handler is called at a trigger byte and
// returns where the walk resumes: past the bytes it masked, or just past the
// trigger when nothing matched. A handler that fails looks at a bounded number
// of bytes, or at bytes no other trigger of the same handler looks at again;
// that is what keeps the whole scan linear on adversarial input such as
// "token=token=token=..." or "sk-sk-sk-...".
type scanner struct {
	s string
	// truncated says s was cut at the capture bound: a match that is cut
	// short at the very end of s is masked even when it cannot be verified.
	truncated bool
	spans     []span
}

// scan returns the sorted, disjoint spans of sensitive data in s.
func scan(s string, truncated bool) []span {
	sc := scanner{s: s, truncated: truncated}
	sc.run()
	return resolve(sc.spans)
}

func (sc *scanner) add(start, end int, k kind, prio uint8) {
	sc.spans = append(sc.spans, span{start: start, end: end, kind: k, prio: prio})
}

// cut reports whether a candidate ending at end was cut by the capture bound,
// so that a failed length check proves nothing about the real value.
func (sc *scanner) cut(end int) bool {
	return sc.truncated && end == len(sc.s)
}

func (sc *scanner) run() {
	s := sc.s
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isDigit(c):
			i = sc.numbers(i)
		case c == '@':
			i = sc.at(i)
		case c == ':' || c == '=':
			i = sc.keyValue(i)
		case c == '-':
			i = sc.flag(i)
		case isLetter(c) && (i == 0 || !isAlnum(s[i-1])):
			i = sc.word(i)
		default:
			i++
		}
	}
}

// word handles a letter at the start of a word: the Bearer scheme and API
// keys with well-known prefixes.
func (sc *scanner) word(i int) int {
	s := sc.s[i:]
	if len(s) >= 4 && isUpper(s[0]) && isUpper(s[1]) && isDigit(s[2]) && isDigit(s[3]) {
		if j := sc.iban(i); j > i+1 {
			return j
		}
	}
	switch s[0] {
	case 'b', 'B':
		return sc.bearer(i)
	case 's':
		// OpenAI (sk-..., sk-proj-...) and Anthropic (sk-ant-...) keys.
		if strings.HasPrefix(s, "sk-") {
			return sc.prefixed(i, 3, isKeyChar, 20)
		}
	case 'A':
		// AWS access key ids (long-term AKIA, temporary ASIA).
		if strings.HasPrefix(s, "AKIA") || strings.HasPrefix(s, "ASIA") {
			return sc.aws(i)
		}
		// Google API keys.
		if strings.HasPrefix(s, "AIza") {
			return sc.prefixed(i, 4, isKeyChar, 30)
		}
	case 'g':
		// GitHub tokens: ghp_ (personal), gho_ (OAuth), ghu_/ghs_ (app),
		// ghr_ (refresh), github_pat_ (fine-grained).
		if len(s) >= 4 && s[1] == 'h' && s[3] == '_' && strings.IndexByte("pousr", s[2]) >= 0 {
			return sc.prefixed(i, 4, isAlnum, 30)
		}
		if strings.HasPrefix(s, "github_pat_") {
			return sc.prefixed(i, 11, isWordChar, 22)
		}
	case 'x':
		// Slack tokens: xoxb-, xoxa-, xoxp-, xoxr-, xoxs-.
		if len(s) >= 5 && s[1] == 'o' && s[2] == 'x' && strings.IndexByte("baprs", s[3]) >= 0 && s[4] == '-' {
			return sc.prefixed(i, 5, isKeyDash, 10)
		}
	}
	return i + 1
}

// prefixed masks a key made of a known prefix of length plen and a body of
// at least minBody bytes accepted by ok. The minimum keeps words such as
// "sk-learn" out.
func (sc *scanner) prefixed(i, plen int, ok func(byte) bool, minBody int) int {
	s := sc.s
	j := i + plen
	for j < len(s) && ok(s[j]) {
		j++
	}
	if n := j - (i + plen); n >= minBody || (n > 0 && sc.cut(j)) {
		sc.add(i, j, kindAPIKey, prioKey)
		return j
	}
	return i + 1
}

// aws masks an AWS access key id: the prefix and exactly 16 upper-case
// letters or digits, not followed by more alphanumerics.
func (sc *scanner) aws(i int) int {
	s := sc.s
	j := i + 4
	for j < len(s) && j < i+20 && (isDigit(s[j]) || s[j] >= 'A' && s[j] <= 'Z') {
		j++
	}
	if (j == i+20 && (j == len(s) || !isAlnum(s[j]))) || (j > i+4 && sc.cut(j)) {
		sc.add(i, j, kindAPIKey, prioKey)
		return j
	}
	return i + 1
}

// bearer masks the token after the word "bearer" (any case), keeping the
// word. Outside an Authorization header "bearer" is also an English word, so
// a short plain word after it ("the bearer of bad news") is left alone; real
// tokens are long or contain digits, symbols or inner capitals.
func (sc *scanner) bearer(i int) int {
	s := sc.s
	if !hasPrefixFold(s[i:], "bearer") {
		return i + 1
	}
	k := i + len("bearer")
	for k < len(s) && isBlank(s[k]) {
		k++
	}
	if k == i+len("bearer") {
		return i + 1 // "bearers", "bearer:", ...
	}
	e := k
	for e < len(s) && isB64Token(s[e]) {
		e++
	}
	if e == k || (isPlainWord(s[k:e]) && !sc.cut(e)) {
		return i + 1
	}
	sc.add(k, e, kindToken, prioBearer)
	return e
}

// isPlainWord reports whether t looks like an English word rather than a
// token: shorter than 16 bytes, letters only, lower case after the first.
func isPlainWord(t string) bool {
	if len(t) >= 16 || !isLetter(t[0]) {
		return false
	}
	for i := 1; i < len(t); i++ {
		if t[i] < 'a' || t[i] > 'z' {
			return false
		}
	}
	return true
}

// keyValue handles ':' and '=' after a key naming a secret (api_key=...,
// "password": "...", Authorization: Bearer ...) and masks the value only.
func (sc *scanner) keyValue(i int) int {
	s := sc.s
	// Comparison and scope operators ("token == x", "a != b", "std::x",
	// "token := f()") are code, not key/value pairs.
	if i+1 < len(s) && (s[i+1] == '=' || s[i+1] == ':') {
		return i + 2
	}
	if i > 0 && strings.IndexByte("=!<>:", s[i-1]) >= 0 {
		return i + 1
	}
	j := i
	for j > 0 && isBlank(s[j-1]) {
		j--
	}
	if j > 0 && isQuote(s[j-1]) {
		j--
		if j > 0 && s[j-1] == '\\' { // {\"api_key\":\"...\"}: JSON inside a string
			j--
		}
	}
	k, ok := sensitiveKey(s, j)
	if !ok {
		return i + 1
	}
	v := i + 1
	if c := s[i]; c == '=' && v < len(s) && s[v] == '>' { // "password" => "x"
		v++
	}
	return sc.value(v, k, s[i] == ':')
}

// flag handles PEM private keys (see pem) and command-line flags naming a secret followed by a space and a
// value: "--password hunter2". The "--password=hunter2" form is handled by
// keyValue.
func (sc *scanner) flag(i int) int {
	s := sc.s
	if strings.HasPrefix(s[i:], pemBegin) {
		if j := sc.pem(i); j > i+1 {
			return j
		}
	}
	// Only at the start of an argument, so that the name scans below never
	// overlap and stay linear.
	if i+2 >= len(s) || s[i+1] != '-' || !isLetter(s[i+2]) || (i > 0 && !isBlank(s[i-1]) && !isQuote(s[i-1])) {
		return i + 1
	}
	j := i + 2
	for j < len(s) && isKeyChar(s[j]) {
		j++
	}
	if j+1 >= len(s) || s[j] != ' ' || s[j+1] == '-' {
		return i + 1
	}
	k, ok := sensitiveKey(s, j)
	if !ok {
		return i + 1
	}
	return sc.value(j, k, false)
}

// value masks the value starting at v (after optional blanks): a quoted
// string up to its closing quote, or an unquoted run up to a delimiter. After
// ':' (headers, YAML, "Enter password: ...") an unquoted value runs to the end
// of the line, because such values are often passphrases with spaces; after
// '=', in flags and for tokens a blank ends it, as in command lines and query
// strings. A leading authentication scheme (Bearer, Basic, or any word for an
// Authorization key) is kept. It returns where the scan resumes.
func (sc *scanner) value(v int, k kind, toEOL bool) int {
	s := sc.s
	for v < len(s) && isBlank(s[v]) {
		v++
	}
	var q byte
	escaped := false
	if v+1 < len(s) && s[v] == '\\' && isQuote(s[v+1]) {
		escaped = true
		v++
	}
	if v < len(s) && isQuote(s[v]) {
		q = s[v]
		v++
	}
	start := v
	if k == kindToken || hasScheme(s[start:]) {
		start = skipScheme(s, start)
		// Credentials after a scheme are one token; an Authorization value
		// never holds a passphrase with spaces.
		toEOL = false
	}
	end := start
	if q != 0 {
		end = quotedEnd(s, start, q, escaped)
	} else {
		for end < len(s) && (!isValueEnd(s[end]) || toEOL && isBlank(s[end])) {
			end++
		}
		for end > start && isBlank(s[end-1]) {
			end--
		}
		switch s[start:end] {
		case "null", "true", "false", "None", "nil": // literals, not secrets
			return end
		}
	}
	if end > start {
		sc.add(start, end, k, prioGeneric)
	}
	return max(end, v)
}

// hasScheme reports whether s starts with an HTTP authentication scheme
// that is followed by credentials: "token: Bearer abc" must mask abc, which
// would otherwise be left after the masked word "Bearer".
func hasScheme(s string) bool {
	for _, w := range [...]string{"bearer", "basic"} {
		if hasPrefixFold(s, w) && len(s) > len(w) && isBlank(s[len(w)]) {
			return true
		}
	}
	return false
}

// skipScheme returns the index after an authentication scheme word and its
// blanks ("Bearer ", "Basic "), or p when s[p:] does not start with one.
func skipScheme(s string, p int) int {
	w := p
	for w < len(s) && isLetter(s[w]) {
		w++
	}
	b := w
	for b < len(s) && isBlank(s[b]) {
		b++
	}
	if w == p || b == w || b >= len(s) || isValueEnd(s[b]) || s[b] == '\\' {
		return p
	}
	return b
}

// quotedEnd returns the index of the quote closing a value that starts at p.
// Backslash escapes are honored; when the opening quote was itself escaped
// (JSON inside a JSON string) the value ends at the next escaped quote. An
// unterminated value ends at a newline or at the end of s: masking too much
// beats leaking.
func quotedEnd(s string, p int, q byte, escaped bool) int {
	for p < len(s) && s[p] != '\n' && s[p] != q {
		if s[p] == '\\' {
			if escaped && p+1 < len(s) && s[p+1] == q {
				return p
			}
			p++
		}
		p++
	}
	return min(p, len(s))
}

// sensitiveKey reports whether the key name ending just before s[j] names a
// secret, and the kind its value is reported as. Names are compared by suffix,
// case-insensitively and ignoring '_', '-' and '.', so "api_key", "X-Api-Key",
// "GITHUB_TOKEN", "client_secret" and "AWS_SECRET_ACCESS_KEY" all match.
// "max_tokens" and "token_count" do not: they are LLM request parameters,
// common in the calls this collector traces, and never secrets.
func sensitiveKey(s string, j int) (kind, bool) {
	// At most 64 bytes are read back: only the suffix matters, and the bound
	// keeps each lookup O(1).
	var buf [16]byte // normalized name, last byte first
	n := 0
loop:
	for p := j - 1; p >= 0 && j-p <= 64 && n < len(buf); p-- {
		switch c := s[p]; {
		case c >= 'A' && c <= 'Z':
			buf[n] = c + 'a' - 'A'
			n++
		case c >= 'a' && c <= 'z' || isDigit(c):
			buf[n] = c
			n++
		case c == '_' || c == '-' || c == '.':
		default:
			break loop
		}
	}
	name := buf[:n]
	if hasRevSuffix(name, "authorization") {
		return kindToken, true
	}
	for _, suf := range [...]string{
		"apikey", "token", "password", "passwd", "passphrase", "secret",
		"secretkey", "accesskey", "privatekey", "credential", "credentials",
	} {
		if hasRevSuffix(name, suf) {
			return kindAPIKey, true
		}
	}
	return 0, false
}

// hasRevSuffix reports whether rev, a string stored last byte first, ends
// with suf.
func hasRevSuffix(rev []byte, suf string) bool {
	if len(rev) < len(suf) {
		return false
	}
	for t := range len(suf) {
		if rev[t] != suf[len(suf)-1-t] {
			return false
		}
	}
	return true
}

// at handles '@': credentials in a URL (scheme://user:password@host) and
// email addresses.
func (sc *scanner) at(i int) int {
	if sc.urlPassword(i) {
		return i + 1
	}
	return sc.email(i)
}

// urlPassword masks the password of URL userinfo ending at '@' s[at]. The
// user name and host are kept: they are not email addresses, and the host is
// what makes a traced URL useful.
func (sc *scanner) urlPassword(at int) bool {
	s := sc.s
	p := at
	colon := -1
	for p > 0 && isUserinfoChar(s[p-1]) {
		p--
		if s[p] == ':' {
			colon = p
		}
	}
	if p < 3 || s[p-3:p] != "://" {
		return false
	}
	if colon >= 0 && colon+1 < at {
		sc.add(colon+1, at, kindAPIKey, prioGeneric)
	}
	return true
}

// email masks an email address around '@' s[at]: a local part of the usual
// characters and a domain of at least two labels ending in a top-level domain
// that starts with a letter (so "user@localhost" and "a@1.2" are left alone).
// Quoted local parts and internationalized addresses are not recognized.
func (sc *scanner) email(at int) int {
	s := sc.s
	start := at
	for start > 0 && isLocalChar(s[start-1]) {
		start--
	}
	for start < at && s[start] == '.' {
		start++
	}
	if start == at {
		return at + 1
	}
	j := at + 1
	for j < len(s) && isDomainChar(s[j]) {
		j++
	}
	end := domainEnd(s, at+1, j)
	if end < 0 {
		// "alice@exam" cut by the bound still names alice.
		if !sc.cut(j) {
			return at + 1
		}
		end = j
	}
	sc.add(start, end, kindEmail, prioEmail)
	return end
}

// domainEnd returns the end of the longest prefix of s[from:to] that is a
// domain name with a plausible top-level domain, or -1. Trailing dots and
// hyphens ("mail alice@example.com.") are not part of it.
func domainEnd(s string, from, to int) int {
	good := -1
	for p := from; p < to; {
		q := p
		for q < to && s[q] != '.' {
			q++
		}
		if q == p {
			break // empty label
		}
		if p > from {
			t := q
			for t > p && s[t-1] == '-' {
				t--
			}
			if t-p >= 2 && isLetter(s[p]) {
				good = t
			}
		}
		p = q + 1
	}
	return good
}

func hasPrefixFold(s, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	for i := range len(lower) {
		if s[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// Byte classes. Only ASCII is ever matched: bytes >= 0x80 (UTF-8 or not)
// always end a candidate, which is why scanning raw, invalid input is safe.

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isBlank(c byte) bool  { return c == ' ' || c == '\t' }
func isQuote(c byte) bool  { return c == '"' || c == '\'' }

func isWordChar(c byte) bool { return isAlnum(c) || c == '_' }
func isKeyChar(c byte) bool  { return isWordChar(c) || c == '-' }
func isKeyDash(c byte) bool  { return isAlnum(c) || c == '-' }

// isB64Token is the RFC 6750 b64token alphabet of bearer tokens.
func isB64Token(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~+/=", c) >= 0
}

// isLocalChar covers the local parts people actually use; the rarer RFC 5322
// characters (!#$&'*/=?^`{|}~) would make "key=alice@example.com" swallow the
// key.
func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomainChar(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// isUserinfoChar is the RFC 3986 userinfo alphabet.
func isUserinfoChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~%!$&'()*+,;=:", c) >= 0
}

// isValueEnd reports whether c ends an unquoted value: whitespace and the
// delimiters of query strings, JSON, headers and shell syntax.
func isValueEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '&', ',', ';', '"', '\'', '<', '>', '}', ']', ')':
		return true
	}
	return false
}
