package httpspans

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// exchange runs one chat completion through the connection tracker, as a tracer feeds it.
func exchange(t *testing.T, tr *llm.Tracker, b *spans.Builder, at time.Time, response string) []llm.Exchange {
	t.Helper()
	h := spans.Header{Time: at, PID: 7, TID: 7}
	b.ModelRequest(h, 1)
	meta := &Meta{Hdr: h, Parent: b.ParentOf(h)}
	req := `{"model":"depot-model","messages":[{"role":"user","content":"hi"}]}`
	raw := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(req), req)
	key := llm.Key{PID: 7, Conn: 1}
	if out := tr.Data(key, llm.Write, []byte(raw), len(raw), at, meta); len(out) != 0 {
		t.Fatalf("%d exchanges before the response", len(out))
	}
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(response), response)
	return tr.Data(key, llm.Read, []byte(resp), len(resp), at.Add(time.Millisecond), &Meta{Hdr: h})
}

// TestInferredToolFromResponse: a chat completion asking for a tool call, made by a process
// without function spans, gives an inferred execute_tool span under the chat, with the call's
// id and its arguments as the model sent them, redacted; the next chat ends it.
func TestInferredToolFromResponse(t *testing.T) {
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: 7, Target: "depot-agent"})
	e := &Emitter{Builder: b, Redactor: redact.New()}
	tr := llm.NewTracker(llm.Options{})
	at := time.Unix(100, 0)
	args := `{\"path\":\"/data/customers.csv\",\"card\":\"4111 1111 1111 1111\",\"n\":3}`
	asks := `{"id":"c1","model":"depot-model","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","tool_calls":[{"id":"call_9","type":"function","function":{"name":"stock-read","arguments":"` + args + `"}}]}}],"usage":{"prompt_tokens":5,"completion_tokens":7}}`
	for _, ex := range exchange(t, tr, b, at, asks) {
		e.Emit(ex)
	}
	answers := `{"id":"c2","model":"depot-model","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"done"}}]}`
	for _, ex := range exchange(t, tr, b, at.Add(time.Second), answers) {
		e.Emit(ex)
	}
	td := b.Flush()
	byName := map[string]ptrace.Span{}
	ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := 0; i < ss.Len(); i++ {
		name := ss.At(i).Name()
		if id, ok := ss.At(i).Attributes().Get("gen_ai.response.id"); ok {
			name += " " + id.Str()
		}
		byName[name] = ss.At(i)
	}
	chat, tool, next := byName["chat depot-model c1"], byName["execute_tool stock-read"], byName["chat depot-model c2"]
	if ss.Len() != 3 || tool.ParentSpanID() != chat.SpanID() || tool.TraceID() != chat.TraceID() {
		t.Fatalf("%d spans; tool's parent %s, chat %s", ss.Len(), tool.ParentSpanID(), chat.SpanID())
	}
	if next.ParentSpanID() != tool.SpanID() || next.TraceID() != tool.TraceID() {
		t.Error("the chat after the tool is not in the conversation")
	}
	m := tool.Attributes()
	for k, want := range map[string]string{"gen_ai.tool.call.id": "call_9", "agenttrail.tool.inferred": "true",
		"agenttrail.tool.inferred_from": "model_tool_call", "agenttrail.arg.path": "/data/customers.csv", "agenttrail.arg.n": "3"} {
		if got := str(m, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"gen_ai.tool.call.arguments", "agenttrail.arg.card"} {
		if got := str(m, k); got == "<missing>" || strings.Contains(got, "4111 1111 1111 1111") {
			t.Errorf("%s = %q: missing or not redacted", k, got)
		}
	}
	if !tool.EndTimestamp().AsTime().Equal(at.Add(time.Second)) {
		t.Errorf("the tool ends at %v, not at the next request", tool.EndTimestamp().AsTime())
	}
	if b.OpenSpans() != 0 {
		t.Errorf("%d spans open after the answer", b.OpenSpans())
	}
}

// TestToolArgumentsShapes: the arguments are found in the three providers' output shapes.
func TestToolArgumentsShapes(t *testing.T) {
	for out, want := range map[string]string{
		`[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\":1}"}}]}]`: `{"x":1}`,
		`[{"type":"function_call","call_id":"a","name":"f","arguments":"{\"x\":1}"}]`:                      `{"x":1}`,
		`[{"type":"tool_use","id":"a","name":"f","input":{"x":1}}]`:                                        `{"x":1}`,
		`not json`: "",
	} {
		if got := string(toolArguments(out)["a"]); got != want {
			t.Errorf("%s: %q, want %q", out, got, want)
		}
	}
}

// FuzzInferredCalls: whatever a model's response says (hostile: the traced process chose the
// server), the calls' arguments stay bounded, valid UTF-8, and at most maxArgMembers members.
func FuzzInferredCalls(f *testing.F) {
	f.Add(`[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\":1,\"card\":\"4111 1111 1111 1111\"}"}}]}]`)
	f.Add(`[{"type":"function_call","call_id":"a","name":"f","arguments":"{\"a.b\":\"\\u00e9\"}"}]`)
	f.Add(`[{"type":"tool_use","id":"a","name":"f","input":{"x":[1,2,{"y":"z"}]}}]`)
	f.Add(`[{"type":"tool_use","id":"a","input":"` + strings.Repeat("é", 700) + `"}]`)
	e := &Emitter{Redactor: redact.New()}
	f.Fuzz(func(t *testing.T, output string) {
		inf := &llm.Inference{OutputMessages: output, ToolCalls: []llm.ToolCall{{Name: "f", ID: "a"}}}
		for _, c := range e.inferredCalls(inf) {
			if len(c.Arguments) > 4*MaxInferredArguments || !utf8.ValidString(c.Arguments) {
				t.Fatalf("arguments of %d bytes, valid %v", len(c.Arguments), utf8.ValidString(c.Arguments))
			}
			if len(c.Args) > maxArgMembers {
				t.Fatalf("%d members", len(c.Args))
			}
			for _, a := range c.Args {
				if len(a[1]) > 4*maxArgValue || !utf8.ValidString(a[1]) || strings.Contains(a[0], ".") {
					t.Fatalf("member %q of %d bytes", a[0], len(a[1]))
				}
			}
		}
	})
}
