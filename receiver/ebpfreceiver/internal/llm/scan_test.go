package llm

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/jsonscan"
)

// TestMembersAgreesWithEncodingJSON: on well-formed objects members sees what encoding/json
// sees, member by member.
func TestMembersAgreesWithEncodingJSON(t *testing.T) {
	bodies := []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"]}"}], "d\"e": "x\\\"y", "f": null, "g": true, "h": -1.5e3 } `,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"{[\"hi\"]}"}],"stream":true}`,
		`{"k\u0041y": {"nested": [[[]]]}}`,
	}
	for _, name := range []string{"openai_tool_calls.req", "anthropic_tool_use.req", "openai_responses.req"} {
		req := read(t, name)
		bodies = append(bodies, string(req[bytes.Index(req, []byte("\r\n\r\n"))+4:]))
	}
	for _, body := range bodies {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatalf("test body %q: %v", body, err)
		}
		got := map[string]string{}
		if err := members([]byte(body), func(k string, raw []byte) { got[k] = string(raw) }); err != nil {
			t.Errorf("%q: %v", body, err)
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%q: members %v, encoding/json %v", body, got, want)
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Errorf("%q: member %q = %q, encoding/json %q", body, k, got[k], v)
			}
		}
	}
}

// TestMembersRejects: what is not one well-formed object is an error, never a panic.
func TestMembersRejects(t *testing.T) {
	for _, body := range []string{
		``, `[]`, `"s"`, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,}`, `{"a":1}}`, `{"a":[1}`, `{"a":{]}`,
		`{"a":"unterminated}`, `{a:1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":}`, `{"a":"x\"}`,
		`{"a":` + strings.Repeat("[", jsonscan.MaxNesting+1) + strings.Repeat("]", jsonscan.MaxNesting+1) + `}`,
	} {
		if err := members([]byte(body), func(string, []byte) {}); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
}

// FuzzMembers: never panics, and never accepts what encoding/json rejects structurally.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c"}]}`, `{"a":"\\"}`, `{"a":1,"b":}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = members(b, func(string, []byte) {})
	})
}

// BenchmarkParse parses one recorded chat completion exchange (request and response bodies).
func BenchmarkParse(b *testing.B) {
	tr := NewTracker(Options{})
	req, resp := read(&testing.T{}, "openai_tool_calls.req"), read(&testing.T{}, "openai_tool_calls.resp")
	tr.Data(Key{}, Write, req, len(req), t0, nil)
	ex := tr.Data(Key{}, Read, resp, len(resp), t0, nil)[0]
	b.SetBytes(int64(len(ex.Request.Body) + len(ex.Response.Body)))
	for b.Loop() {
		if _, ok := Parse(ex); !ok {
			b.Fatal("not parsed")
		}
	}
}
