package httpspans

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// MaxInferredArguments bounds the arguments an inferred tool span carries (before redaction's
// markers).
const MaxInferredArguments = 1024

// AddInference emits an inference span d (of ex, parsed as inf) under meta.Parent, and tells
// the builder the model's turn: a process whose functions are not probed gets an inferred
// `execute_tool` span per tool call the response asked for (spans.Builder.ModelTurn). It
// returns false when the process is no longer known.
func (e *Emitter) AddInference(ex llm.Exchange, inf *llm.Inference, meta *Meta, d spans.SpanData) bool {
	r := e.Builder.Reserve(e.Builder.InferredChatParent(meta.Parent))
	if !e.Builder.EndReserved(r, d) {
		return false
	}
	e.Builder.ModelTurn(meta.Parent, r.Parent(), ex.Key.Conn, d.Start, d.End, e.inferredCalls(inf))
	return true
}

// inferredCalls are inf's tool calls with their arguments (from the response's messages, as the
// model sent them), redacted and bounded. A streamed response's arguments come in deltas the
// parser does not keep: its calls have none.
func (e *Emitter) inferredCalls(inf *llm.Inference) []spans.InferredCall {
	if len(inf.ToolCalls) == 0 {
		return nil
	}
	args := toolArguments(inf.OutputMessages)
	calls := make([]spans.InferredCall, 0, len(inf.ToolCalls))
	for _, tc := range inf.ToolCalls {
		c := spans.InferredCall{Name: tc.Name, ID: tc.ID}
		if raw, ok := args[tc.ID]; ok && tc.ID != "" && len(raw) > 0 {
			cut := len(raw) > MaxInferredArguments
			if cut {
				raw = raw[:MaxInferredArguments]
			}
			c.Arguments, _, _ = e.Redactor.Value(redact.PolicyRedacted, raw, cut)
			c.Cut = cut
			c.Args = e.argMembers(raw)
		}
		calls = append(calls, c)
	}
	return calls
}

// Bounds of the arguments given one attribute each (agenttrail.arg.<name>, as a probed tool's).
const (
	maxArgMembers = 16
	maxArgValue   = 256
)

// argMembers are the top-level members of a JSON object of arguments (the first maxArgMembers,
// names without dots), strings as they are and other values as JSON, each redacted and bounded.
// Arguments that were cut or are not an object give none.
func (e *Emitter) argMembers(raw []byte) [][2]string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		if k != "" && !strings.Contains(k, ".") && len(k) <= 64 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	names = names[:min(len(names), maxArgMembers)]
	out := make([][2]string, 0, len(names))
	for _, k := range names {
		v := []byte(obj[k])
		var str string
		if json.Unmarshal(v, &str) == nil {
			v = []byte(str)
		}
		cut := len(v) > maxArgValue
		if cut {
			v = v[:maxArgValue]
		}
		val, _, _ := e.Redactor.Value(redact.PolicyRedacted, v, cut)
		name, _ := e.Redactor.String(k)
		out = append(out, [2]string{name, val})
	}
	return out
}

// toolArguments reads the arguments of each tool call, by call id, from a response's output
// messages in the three shapes internal/llm keeps: chat completions' messages (tool_calls[].
// function.arguments, a JSON string), Responses output items (function_call: call_id and
// arguments), Anthropic content blocks (tool_use: id and input, an object). Anything else,
// or JSON that does not parse, gives none.
func toolArguments(output string) map[string][]byte {
	if output == "" {
		return nil
	}
	var items []struct {
		// chat completions
		ToolCalls []struct {
			ID       string `json:"id"`
			Function struct {
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
		// Responses
		Type      string `json:"type"`
		CallID    string `json:"call_id"`
		Arguments string `json:"arguments"`
		// Anthropic
		ID    string          `json:"id"`
		Input json.RawMessage `json:"input"`
	}
	if json.Unmarshal([]byte(output), &items) != nil {
		return nil
	}
	out := map[string][]byte{}
	for _, it := range items {
		for _, tc := range it.ToolCalls {
			out[tc.ID] = []byte(tc.Function.Arguments)
		}
		switch it.Type {
		case "function_call":
			out[it.CallID] = []byte(it.Arguments)
		case "tool_use", "server_tool_use":
			out[it.ID] = it.Input
		}
	}
	return out
}

// NoteReceived offers the response body of a non-LLM exchange to the inferred tool span it
// was made under, if any (spans.Builder.InferredToolReceived): a tool's fetched document is
// what an indirect injection comes in. Only with CaptureContent (what models read is content),
// redacted, bounded.
func (e *Emitter) NoteReceived(ex llm.Exchange, meta *Meta) {
	if !e.CaptureContent || ex.Response == nil || len(ex.Response.Body) == 0 || !meta.Parent.HasSpan() {
		return
	}
	body := ex.Response.Body
	cut := len(body) > spans.MaxInferredReceived
	if cut {
		body = body[:spans.MaxInferredReceived]
	}
	text, _, _ := e.Redactor.Value(redact.PolicyRedacted, body, cut)
	e.Builder.InferredToolReceived(meta.Parent, text)
}
