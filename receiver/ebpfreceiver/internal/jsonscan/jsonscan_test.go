package jsonscan

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type member struct {
	key, raw string
	whole    bool
}

func walk(b []byte) ([]member, error) {
	var got []member
	err := Members(b, func(k string, raw []byte, whole bool) { got = append(got, member{k, string(raw), whole}) })
	return got, err
}

// wellFormed are objects encoding/json accepts, with the corners a hand walk can miss.
var wellFormed = []string{
	`{}`, ` { } `, ` { "a" : 1 , "b":[1,{"c":"]}"}], "d\"e": "x\\\"y", "f": null, "g": true, "h": -1.5e3 } `,
	`{"model":"gpt-4o","messages":[{"role":"user","content":"{[\"hi\"]}"}],"stream":true}`,
	`{"k\u0041y": {"nested": [[[]]]}, "s": "\\", "t": "\u00e9\n"}`,
	`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"a \"quoted\" }]"}],"isError":false}}`,
}

// TestMembersAgreesWithEncodingJSON: on well-formed objects Members sees what encoding/json
// sees, member by member, all whole.
func TestMembersAgreesWithEncodingJSON(t *testing.T) {
	for _, body := range wellFormed {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatalf("test body %q: %v", body, err)
		}
		got, err := walk([]byte(body))
		if err != nil || len(got) != len(want) {
			t.Errorf("%q: %v %v, encoding/json %v", body, got, err, want)
			continue
		}
		for _, m := range got {
			if !m.whole || string(want[m.key]) != m.raw {
				t.Errorf("%q: member %q = %q (whole %v), encoding/json %q", body, m.key, m.raw, m.whole, want[m.key])
			}
		}
	}
}

// TestCutAnywhere: every prefix of a well-formed object (and of the recorded MCP sessions'
// messages) is read as far as it goes: the members before the cut whole and as in the full
// object, the one cut passed unfinished as a prefix of its value, ErrCut returned.
func TestCutAnywhere(t *testing.T) {
	bodies := append([]string(nil), wellFormed...)
	for _, name := range []string{"node-filesystem.chunks", "go-everything.chunks"} {
		b, err := os.ReadFile(filepath.Join("..", "mcp", "testdata", "stdio", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "{") && json.Valid([]byte(line)) {
				bodies = append(bodies, line)
			}
		}
	}
	for _, body := range bodies {
		full, err := walk([]byte(body))
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		end := len(strings.TrimRight(body, " \n\r\t"))
		for k := strings.IndexByte(body, '{') + 1; k < end; k++ {
			checkPrefix(t, []byte(body[:k]), full)
		}
	}
}

// checkPrefix checks the walk of a prefix of an object whose full walk is full.
func checkPrefix(t *testing.T, prefix []byte, full []member) {
	t.Helper()
	got, err := walk(prefix)
	if !errors.Is(err, ErrCut) {
		t.Fatalf("%q: %v, want ErrCut", prefix, err)
	}
	for i, m := range got {
		if i >= len(full) || m.key != full[i].key || (m.whole && m.raw != full[i].raw) ||
			(!m.whole && (i != len(got)-1 || !strings.HasPrefix(full[i].raw, m.raw))) {
			t.Fatalf("%q: member %d %+v, full %+v", prefix, i, m, full)
		}
	}
}

// TestRejects: what is not one object is an error other than ErrCut, never a panic.
func TestRejects(t *testing.T) {
	for _, body := range []string{
		``, `[]`, `"s"`, `{"a":1,}`, `{"a":1}}`, `{"a":[1}`, `{"a":{]}`, `{a:1}`, `{"a" 1}`, `{"a":1 "b":2}`,
		`{"a":}`, `{"a"::1}`, `{"a":1}x`,
		`{"a":` + strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1) + `}`,
	} {
		if _, err := walk([]byte(body)); err == nil || errors.Is(err, ErrCut) {
			t.Errorf("%q: %v", body, err)
		}
	}
}

func TestElements(t *testing.T) {
	var got []string
	err := Elements([]byte(` [1, "a]", {"b":[2]}, null ] `), func(raw []byte, whole bool) {
		if whole {
			got = append(got, string(raw))
		}
	})
	if err != nil || strings.Join(got, "|") != `1|"a]"|{"b":[2]}|null` {
		t.Fatalf("%q %v", got, err)
	}
	got = nil
	err = Elements([]byte(`[{"a":1},{"b":`), func(raw []byte, whole bool) {
		got = append(got, string(raw)+map[bool]string{true: "", false: "…"}[whole])
	})
	if !errors.Is(err, ErrCut) || strings.Join(got, "|") != `{"a":1}|{"b":…` {
		t.Fatalf("cut: %q %v", got, err)
	}
	if err := Elements([]byte(`{}`), func([]byte, bool) {}); !errors.Is(err, ErrNotArray) {
		t.Fatalf("object: %v", err)
	}
}

func TestUnquote(t *testing.T) {
	for tok, want := range map[string]string{
		`"plain"`: "plain", `"a\"b"`: `a"b`, `"\u00e9"`: "é", `""`: "", `"`: "", `x`: "", `"a\x"`: "",
		"\"bad \x94 byte\"": "bad \uFFFD byte", "\"cut \xe2\x82": "", // invalid UTF-8 becomes U+FFFD, never an attribute
	} {
		if got := Unquote([]byte(tok)); got != want {
			t.Errorf("Unquote(%q) = %q, want %q", tok, got, want)
		}
	}
	for tok, want := range map[string]string{
		`"whole"`: "whole", `"cut he`: "cut he", `"half \`: "half ", `"half \u00`: "half ", `"esc \n and \u00e9`: "esc \n and é",
		`"back\\`: `back\`, `"back\\\`: `back\`, ``: "", `x"`: "",
		"\"cut \xe2\x82": "cut ", "\"cut \xe2\x82\xac": "cut €", // a rune cut by the bound is dropped

	} {
		if got := UnquotePrefix([]byte(tok)); got != want {
			t.Errorf("UnquotePrefix(%q) = %q, want %q", tok, got, want)
		}
	}
}

// FuzzJSONScan: on any input, no panic; on a well-formed object, Members agrees with
// encoding/json and every prefix of it is read as far as it goes (checkPrefix).
func FuzzJSONScan(f *testing.F) {
	for _, s := range append(wellFormed, `{"a":"\\"}`, `{"a":1,"b":}`, `{"a":"\u12`, `[1,[2`) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := walk(b)
		_ = Elements(b, func([]byte, bool) {})
		for _, m := range got {
			if !m.whole {
				_ = UnquotePrefix([]byte(m.raw))
			}
		}
		var want map[string]json.RawMessage
		if json.Unmarshal(b, &want) != nil || want == nil {
			return // not an object (encoding/json reads "null" into a map as a nil map)
		}
		if err != nil {
			t.Fatalf("%q: %v, encoding/json accepts it", b, err)
		}
		for _, m := range got {
			if !m.whole {
				t.Fatalf("%q: %+v unfinished", b, m)
			}
		}
		// encoding/json keeps the last of duplicate keys.
		last := map[string]string{}
		for _, m := range got {
			last[m.key] = m.raw
		}
		for k, v := range want {
			if last[k] != string(v) {
				t.Fatalf("%q: %q = %q, encoding/json %q", b, k, last[k], v)
			}
		}
		end := len(strings.TrimRight(string(b), " \n\r\t"))
		for k := strings.IndexByte(string(b), '{') + 1; k < end; k++ {
			checkPrefix(t, b[:k], got)
		}
	})
}
