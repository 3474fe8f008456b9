package httpspans

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func attrs(d spans.SpanData) pcommon.Map {
	m := pcommon.NewMap()
	d.Attributes(m)
	return m
}

func str(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return "<missing>"
	}
	return v.AsString()
}

// TestInferenceSpan: an LLM call's span carries the GenAI attributes, the tool calls as
// events, its error, and message content only when configured (redacted, bounded).
func TestInferenceSpan(t *testing.T) {
	at := time.Unix(100, 0)
	meta := &Meta{Hdr: spans.Header{Time: at, TID: 9}, TLSLibrary: "go", Stack: []spans.Frame{{Function: "main.ask"}}}
	inf := &llm.Inference{
		Provider: "openai", API: "chat_completions", RequestModel: "gpt-x", ResponseModel: "gpt-x-1", ResponseID: "r1",
		HasInputTokens: true, InputTokens: 12, Method: "POST", Path: "/v1/chat/completions?key=sk-abcdefghijklmnopqrstuvwxyz123456",
		Host: "api.openai.com:443", Status: 429, ProtocolVersion: "2",
		ToolCalls:     []llm.ToolCall{{Name: "export", ID: "c1"}},
		InputMessages: `[{"role":"user","content":"card 4111 1111 1111 1111"}]`,
	}
	e := &Emitter{Redactor: redact.New()}
	d := e.InferenceSpan(inf, meta, at.Add(time.Second))
	if d.Name != "chat gpt-x" || d.Kind != ptrace.SpanKindClient || !d.Start.Equal(at) || d.TID != 9 {
		t.Errorf("span %+v", d)
	}
	if !strings.Contains(d.Error, "HTTP 429") {
		t.Errorf("error %q", d.Error)
	}
	m := attrs(d)
	for k, want := range map[string]string{
		"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-x", "gen_ai.response.model": "gpt-x-1",
		"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "<missing>", "server.address": "api.openai.com",
		"server.port": "443", "error.type": "429", "agenttrail.tls.library": "go", "network.protocol.version": "2",
		"code.stacktrace": "main.ask", "gen_ai.input.messages": "<missing>", "thread.id": "9",
	} {
		if got := str(m, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if p := str(m, "url.path"); strings.Contains(p, "sk-abcdefghijklmnopqrstuvwxyz123456") {
		t.Errorf("url.path not redacted: %q", p)
	}
	evs := ptrace.NewSpanEventSlice()
	d.Events(evs)
	if evs.Len() != 1 || evs.At(0).Name() != "gen_ai.tool.call" {
		t.Errorf("%d events", evs.Len())
	}

	e.CaptureContent = true
	m = attrs(e.InferenceSpan(inf, meta, at))
	if got := str(m, "gen_ai.input.messages"); got == "<missing>" || strings.Contains(got, "4111 1111 1111 1111") {
		t.Errorf("content %q: missing or not redacted", got)
	}
	inf.InputMessages = strings.Repeat("x", MaxMessageContent+100)
	m = attrs(e.InferenceSpan(inf, meta, at))
	if got := str(m, "gen_ai.input.messages"); len(got) > MaxMessageContent+64 {
		t.Errorf("content of %d bytes", len(got))
	}
}

// TestPlaintextHasNoTLSLibrary: a connection read in plaintext (no TLS library) says nothing
// about TLS on its spans.
func TestPlaintextHasNoTLSLibrary(t *testing.T) {
	meta := &Meta{Hdr: spans.Header{Time: time.Unix(1, 0)}}
	e := &Emitter{Redactor: redact.New()}
	for _, d := range []spans.SpanData{
		e.InferenceSpan(&llm.Inference{Provider: "openai"}, meta, time.Unix(2, 0)),
		UnparsedSpan(llm.Exchange{Unparsed: "not_http"}, meta),
	} {
		if got := str(attrs(d), "agenttrail.tls.library"); got != "<missing>" {
			t.Errorf("%s: agenttrail.tls.library = %q", d.Name, got)
		}
	}
}

func TestPutServer(t *testing.T) {
	for host, want := range map[string]string{
		"api.example.test:8443": "api.example.test/8443", "api.example.test": "api.example.test/<missing>",
		"[::1]:443": "::1/443", "": "<missing>/<missing>",
	} {
		m := pcommon.NewMap()
		PutServer(m, host)
		if got := str(m, "server.address") + "/" + str(m, "server.port"); got != want {
			t.Errorf("%q: %s, want %s", host, got, want)
		}
	}
}

// TestEmitWithoutMeta: an exchange whose request was not seen, or whose meta is another
// tracer's, makes no span.
func TestEmitWithoutMeta(t *testing.T) {
	b := spans.NewBuilder(spans.Options{MaxOpenSpans: 10})
	e := &Emitter{Builder: b, Redactor: redact.New()}
	e.Emit(llm.Exchange{})
	e.Emit(llm.Exchange{Unparsed: "x", Meta: "not a *Meta"})
	if n := b.PendingSpans(); n != 0 {
		t.Errorf("%d spans", n)
	}
}
