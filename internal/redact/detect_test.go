package redact

import (
	"slices"
	"strings"
	"testing"
)

func TestIBAN(t *testing.T) {
	runStringCases(t, []redactCase{
		{"german grouped", "pay to DE89 3704 0044 0532 0130 00 today", "pay to [REDACTED:iban] today", Counts{IBAN: 1}},
		{"german compact", "iban=DE89370400440532013000", "iban=[REDACTED:iban]", Counts{IBAN: 1}},
		{"british", "GB82WEST12345698765432,", "[REDACTED:iban],", Counts{IBAN: 1}},
		{"norwegian shortest", "NO9386011117947", MarkerIBAN, Counts{IBAN: 1}},
		{"maltese longest with letters", "MT84 MALT 0110 0001 2345 MTLC AST0 01S", MarkerIBAN, Counts{IBAN: 1}},
		same("bad check digits", "DE88 3704 0044 0532 0130 00"),
		same("too short for its country", "DE89370400440532013"),
		same("followed by more", "DE89370400440532013000X"),
		same("unknown country", "ZZ89370400440532013000"),
		same("group of three", "DE89 370 4004 4053 2013 000"),
		same("lowercase", "de89370400440532013000"),
		same("part number", "AB12CD34EF56GH78"),
	})
}

func TestIBANTruncated(t *testing.T) {
	got, c, _ := New().Value(PolicyRedacted, []byte("to DE89 3704 0044 05"), true)
	if want := "to " + MarkerIBAN + MarkerTruncated; got != want || c.IBAN != 1 {
		t.Errorf("got %q %+v, want %q", got, c, want)
	}
}

func TestPrivateKey(t *testing.T) {
	const key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9\nZm9vYmFy\n-----END RSA PRIVATE KEY-----"
	runStringCases(t, []redactCase{
		{"pkcs1 block", "key:\n" + key + "\nrest", "key:\n" + MarkerKey + "\nrest", Counts{PrivateKey: 1}},
		{"openssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", MarkerKey + "\n", Counts{PrivateKey: 1}},
		{"no end: the rest is key", "x -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "x " + MarkerKey, Counts{PrivateKey: 1}},
		{"two keys", key + "\n" + key, MarkerKey + "\n" + MarkerKey, Counts{PrivateKey: 2}},
		same("certificate", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
		same("public key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"),
		same("no closing dashes", "-----BEGIN PRIVATE KEY"),
	})
}

// TestPrivateKeyLinear: many BEGIN headers without END lines must not be searched for their END
// once each (quadratic): the first masks the rest.
func TestPrivateKeyLinear(t *testing.T) {
	in := strings.Repeat("-----BEGIN PRIVATE KEY-----\n", 20000)
	got, c := New().String(in)
	if got != MarkerKey || c.PrivateKey != 1 {
		t.Errorf("got %d bytes, counts %+v", len(got), c)
	}
}

func TestDetect(t *testing.T) {
	r := New()
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"clients csv", "id,name,card,ssn\nC1001,Jane Roe,4111 1111 1111 1111,123-45-6789\n", []string{DetectCard, DetectSSN}},
		{"iban and key", "DE89370400440532013000\n-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----", []string{DetectIBAN, DetectPrivateKey}},
		{"dotenv", "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123\n", []string{DetectAPIKey}},
		{"python source with password names", "def login(user, password=None, token=''):\n    auth = 'Bearer ' + token\n    mail = 'root@example.com'\n", nil},
		{"generic secret only", "password=hunter2\n", nil},
		{"luhn-failing digits", "4111 1111 1111 1112 and 123456789", nil},
		{"binary noise", "\x00\x01\xffELF\x02\x01\x01", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Detect([]byte(tc.in)); !slices.Equal(got, tc.want) {
				t.Errorf("Detect = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzDetect: Detect never panics, names only its detectors in their order, and whatever it
// reports is also masked by String (what a file is called sensitive for would be redacted in
// an argument).
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		"", "C1001,Jane,4111 1111 1111 1111,123-45-6789", "DE89 3704 0044 0532 0130 00",
		"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----", "KEY=sk-proj-abcdefghijklmnopqrstuvwxyz",
		"GB82WEST12345698765432", "-----BEGIN RSA PRIVATE KEY-----",
	} {
		f.Add([]byte(s))
	}
	order := []string{DetectCard, DetectSSN, DetectIBAN, DetectPrivateKey, DetectAPIKey}
	r := New()
	f.Fuzz(func(t *testing.T, b []byte) {
		got := r.Detect(b)
		last := -1
		for _, name := range got {
			k := slices.Index(order, name)
			if k <= last {
				t.Fatalf("Detect = %q: unknown, repeated or out of order", got)
			}
			last = k
		}
		if len(got) > 0 {
			if out, c := r.String(string(b)); out == string(b) || c.Total() == 0 {
				t.Fatalf("Detect = %q but String masked nothing", got)
			}
		}
	})
}
