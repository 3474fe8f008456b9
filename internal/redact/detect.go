package redact

import (
	"strings"
)

// Detector names reported by [Redactor.Detect]: the names a span attribute carries, never the data.
const (
	DetectCard       = "card_number"
	DetectSSN        = "us_ssn"
	DetectIBAN       = "iban"
	DetectPrivateKey = "private_key"
	DetectAPIKey     = "api_key"
)

// Detect reports which kinds of sensitive data occur in b, as detector names in a fixed order
// (card_number, us_ssn, iban, private_key, api_key), or nil. It is meant for content that is
// never exported (the beginning of a file a traced process read), so it reports only the
// detectors precise enough to call a whole file sensitive on one match: cards pass Luhn, SSNs
// are in their separated form, IBANs pass the ISO 7064 check for their country's length,
// private keys have a PEM header, API keys have a vendor's prefix. Email addresses, bearer
// tokens and key=value secrets are left out: they occur in ordinary source files, manuals and
// configuration (a Python module with `password=` in a signature), which would make every
// import look like a sensitive read.
func (r *Redactor) Detect(b []byte) []string {
	sc := scanner{s: string(b)}
	sc.run()
	var seen [5]bool
	for _, sp := range sc.spans {
		switch {
		case sp.kind == kindCard:
			seen[0] = true
		case sp.kind == kindSSN:
			seen[1] = true
		case sp.kind == kindIBAN:
			seen[2] = true
		case sp.kind == kindPrivateKey:
			seen[3] = true
		case sp.kind == kindAPIKey && sp.prio == prioKey:
			seen[4] = true
		case sp.kind == kindAPIKey || sp.kind == kindToken:
			// A key=value secret is masked whole by the generic detector; it counts when its
			// value is a vendor's key (OPENAI_API_KEY=sk-...). Values are disjoint, so each byte
			// is scanned at most twice.
			sub := scanner{s: sc.s[sp.start:sp.end]}
			sub.run()
			for _, v := range sub.spans {
				seen[4] = seen[4] || (v.kind == kindAPIKey && v.prio == prioKey)
			}
		}
	}
	var out []string
	for k, name := range [...]string{DetectCard, DetectSSN, DetectIBAN, DetectPrivateKey, DetectAPIKey} {
		if seen[k] {
			out = append(out, name)
		}
	}
	return out
}

// ibanLengths is the length of an IBAN per country (ISO 13616 registry). A country missing here
// is not detected: the length check is what keeps two capitals, two digits and a run of
// letters and digits (part numbers, licence plates) from passing the 1-in-97 checksum alone.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
	"LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
	"NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
	"SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
	"TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// iban handles a word starting with two capitals and two digits: an IBAN of its country's
// length, written as one run or in groups of four separated by single spaces ("DE89 3704 0044
// 0532 0130 00"), not followed by more letters or digits, whose ISO 7064 MOD 97-10 check is 1.
// It looks at most 34 characters and their spaces, so a failure costs a bounded look. At the
// cut point of a truncated capture, 12 or more characters in that layout are masked unchecked
// (the check digits cannot be verified without the rest), as cards are.
func (sc *scanner) iban(i int) int {
	s := sc.s
	want := ibanLengths[s[i:i+2]]
	if want == 0 {
		return i + 1
	}
	var buf [34]byte
	n, j, spaced := 0, i, false
	for j < len(s) && n < want {
		c := s[j]
		if isDigit(c) || isUpper(c) {
			if spaced && n > 4 && n%4 == 0 && s[j-1] != ' ' {
				return i + 1 // grouped, then a group of more than four
			}
			buf[n] = c
			n++
			j++
			continue
		}
		if c == ' ' && n%4 == 0 && (n == 4 || spaced) && j+1 < len(s) && (isDigit(s[j+1]) || isUpper(s[j+1])) {
			spaced = true
			j++
			continue
		}
		break
	}
	if n < want {
		if sc.cut(j) && n >= 12 {
			sc.add(i, j, kindIBAN, prioIBAN)
			return j
		}
		return i + 1
	}
	if j < len(s) && isAlnum(s[j]) {
		return i + 1
	}
	// Move the country and check digits to the end, letters become 10..35, and the number
	// modulo 97 must be 1; computed digit by digit so no big integer is needed.
	mod := 0
	for k := range n {
		c := buf[(k+4)%n]
		if isDigit(c) {
			mod = (mod*10 + int(c-'0')) % 97
		} else {
			mod = (mod*100 + int(c-'A'+10)) % 97
		}
	}
	if mod != 1 {
		return i + 1
	}
	sc.add(i, j, kindIBAN, prioIBAN)
	return j
}

const (
	pemBegin = "-----BEGIN "
	pemEnd   = "-----END "
	pemDash  = "-----"
)

// pem handles "-----BEGIN ... PRIVATE KEY-----" (PKCS#1, PKCS#8, SEC 1, OpenSSH, encrypted):
// the whole block up to its END line is masked, so neither the base64 body nor a passphrase
// comment leaks. Without an END line the rest of the input is masked: the key was cut, and
// everything after its header is key. The search for the END line is done once and the walk
// resumes after it, so the scan stays linear. Certificates and public keys are not secrets and
// are left alone.
func (sc *scanner) pem(i int) int {
	s := sc.s
	label := s[i+len(pemBegin):]
	e := strings.Index(label[:min(len(label), 64)], pemDash)
	if e < 0 || !strings.HasSuffix(label[:e], "PRIVATE KEY") {
		return i + 1
	}
	body := i + len(pemBegin) + e + len(pemDash)
	k := strings.Index(s[body:], pemEnd)
	if k < 0 {
		sc.add(i, len(s), kindPrivateKey, prioPrivateKey)
		return len(s)
	}
	end := body + k + len(pemEnd)
	if d := strings.Index(s[end:min(len(s), end+64)], pemDash); d >= 0 {
		end += d + len(pemDash)
	} else {
		end = min(len(s), end+64)
	}
	sc.add(i, end, kindPrivateKey, prioPrivateKey)
	return end
}
