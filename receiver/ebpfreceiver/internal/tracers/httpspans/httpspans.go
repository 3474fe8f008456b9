// Package httpspans turns reassembled HTTP exchanges (internal/llm's Tracker, fed by any
// tracer that sees an HTTP connection's plaintext: TLS today, plain sockets next) into spans:
// an inference span for an LLM API call, a client span for another HTTP request, one span
// saying so for a connection that is not HTTP. It is shared by those tracers, not part of one.
package httpspans

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

// Meta is what the tracer knew when it saw a message of the exchange (llm.Message.Meta, the
// Meta of an unparsed exchange): where the span goes, the thread and stack that made the call,
// and how its bytes were read.
type Meta struct {
	Parent spans.Parent
	Hdr    spans.Header
	Stack  []spans.Frame // innermost first; nil when unknown
	// TLSLibrary is how TLS plaintext was read ("openssl", "go": agenttrail.tls.library);
	// "" for a connection read in plaintext.
	TLSLibrary string
}

// Emitter turns exchanges into spans through the builder. Reader goroutine only.
type Emitter struct {
	Builder  *spans.Builder
	Redactor *redact.Redactor
	// CaptureContent exports the (redacted) messages sent to and received from models.
	CaptureContent bool
	// Intercept, when set, is offered each exchange with a request first; it returns true when
	// it made the exchange's spans itself (MCP's streamable HTTP: tracers/plaintext).
	Intercept func(ex llm.Exchange, meta *Meta) bool
	// ToolCalls, when set, is told each inference's tool calls (by the calling process), for
	// MCP spans to carry the model's tool-call id.
	ToolCalls *ToolCalls
}

// MaxMessageContent bounds gen_ai.input.messages / gen_ai.output.messages.
const MaxMessageContent = 64 << 10

// Emit turns one reassembled exchange into a span under the call that made it. An exchange
// whose Meta is not a *Meta (or whose request was not seen) makes none.
func (e *Emitter) Emit(ex llm.Exchange) {
	if ex.Unparsed != "" {
		meta, _ := ex.Meta.(*Meta)
		if meta == nil {
			return
		}
		e.Builder.AddSpan(meta.Parent, UnparsedSpan(ex, meta))
		return
	}
	if ex.Request == nil {
		return // a response whose request was not seen (attached mid-connection)
	}
	meta, _ := ex.Request.Meta.(*Meta)
	if meta == nil {
		return
	}
	if e.Intercept != nil && e.Intercept(ex, meta) {
		return
	}
	end := ex.Request.End
	if ex.Response != nil {
		end = ex.Response.End
	}
	var d spans.SpanData
	inf, ok := llm.Parse(ex)
	if ok {
		d = e.InferenceSpan(inf, meta, end)
		if e.ToolCalls != nil {
			e.ToolCalls.Record(meta.Hdr.PID, end, inf.ToolCalls)
		}
	} else {
		d = e.HTTPSpan(ex, meta, end)
	}
	if ex.Request.Joined {
		attrs := d.Attributes
		d.Attributes = func(m pcommon.Map) {
			attrs(m)
			PutJoined(m, ex.Request, ex.Response)
			if ok && inf.FromBodies {
				m.PutBool("agenttrail.llm.recognized_from_bodies", true)
			}
		}
	}
	if ok {
		e.AddInference(ex, inf, meta, d)
		return
	}
	e.Builder.AddSpan(meta.Parent, d)
	e.NoteReceived(ex, meta)
}

// PutJoined says that an HTTP/2 connection was joined after its preface (internal/llm's
// h2join.go), and how many header fields of the exchange were hidden in the HPACK table as it
// was before the join.
func PutJoined(m pcommon.Map, req, resp *llm.Message) {
	if req == nil || !req.Joined {
		return
	}
	hidden := req.HiddenFields
	if resp != nil {
		hidden += resp.HiddenFields
	}
	m.PutBool("agenttrail.http2.joined", true)
	m.PutInt("agenttrail.http2.hidden_fields", int64(hidden))
}

// UnparsedSpan is the span of a connection whose bytes are not HTTP the tracker can read.
func UnparsedSpan(ex llm.Exchange, meta *Meta) spans.SpanData {
	return spans.SpanData{
		Name: "tls", Kind: ptrace.SpanKindClient, Start: meta.Hdr.Time, End: meta.Hdr.Time, TID: meta.Hdr.TID,
		Attributes: func(m pcommon.Map) {
			putLibrary(m, meta)
			m.PutStr("agenttrail.tls.unparsed", ex.Unparsed)
			m.PutInt("agenttrail.tls.bytes_written", ex.BytesWritten)
			m.PutInt("agenttrail.tls.bytes_read", ex.BytesRead)
			m.PutInt("thread.id", int64(meta.Hdr.TID))
			PutStack(m, meta.Stack)
		},
	}
}

// HTTPSpan is the client span of an HTTP request that is not an LLM API call.
func (e *Emitter) HTTPSpan(ex llm.Exchange, meta *Meta, end time.Time) spans.SpanData {
	req, resp := ex.Request, ex.Response
	d := spans.SpanData{
		Name: req.Method, Kind: ptrace.SpanKindClient, Start: meta.Hdr.Time, End: end, TID: meta.Hdr.TID,
		Attributes: func(m pcommon.Map) {
			m.PutStr("http.request.method", req.Method)
			if v := llm.ProtocolVersion(req.Proto); v != "" {
				m.PutStr("network.protocol.version", v)
			}
			target, _ := e.Redactor.String(req.Target)
			m.PutStr("url.path", target)
			PutServer(m, req.Header.Get("Host"))
			m.PutInt("http.request.body.size", req.WireSize)
			if resp != nil {
				m.PutInt("http.response.status_code", int64(resp.Status))
				m.PutInt("http.response.body.size", resp.WireSize)
			}
			putLibrary(m, meta)
			m.PutInt("thread.id", int64(meta.Hdr.TID))
			PutStack(m, meta.Stack)
		},
	}
	if resp != nil && resp.Status >= 400 {
		d.Error = "HTTP " + strconv.Itoa(resp.Status)
	}
	return d
}

func putLibrary(m pcommon.Map, meta *Meta) {
	if meta.TLSLibrary != "" {
		m.PutStr("agenttrail.tls.library", meta.TLSLibrary)
	}
}

// PutStack sets code.stacktrace from frames (innermost first), when there are any.
func PutStack(m pcommon.Map, frames []spans.Frame) {
	if len(frames) > 0 {
		m.PutStr("code.stacktrace", spans.FormatStack(frames))
	}
}

// PutServer sets server.address and server.port from a Host header's value.
func PutServer(m pcommon.Map, host string) {
	if host == "" {
		return
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		m.PutStr("server.address", h)
		if port, err := strconv.Atoi(p); err == nil {
			m.PutInt("server.port", int64(port))
		}
		return
	}
	m.PutStr("server.address", host)
}

// InferenceSpan is the span of an LLM API call (GenAI semantic conventions).
func (e *Emitter) InferenceSpan(inf *llm.Inference, meta *Meta, end time.Time) spans.SpanData {
	name := "chat"
	if inf.RequestModel != "" {
		name = "chat " + inf.RequestModel
	}
	d := spans.SpanData{Name: name, Kind: ptrace.SpanKindClient, Start: meta.Hdr.Time, End: end, TID: meta.Hdr.TID}
	switch {
	case inf.Status >= 400:
		d.Error = fmt.Sprintf("the model API answered HTTP %d", inf.Status)
	case inf.ErrorType != "":
		d.Error = "the model API answered an error: " + inf.ErrorType
	}
	content := e.CaptureContent
	d.Attributes = func(m pcommon.Map) {
		m.PutStr("gen_ai.operation.name", "chat")
		m.PutStr("gen_ai.provider.name", inf.Provider)
		m.PutStr("agenttrail.role", string(spans.RoleInference))
		m.PutStr("agenttrail.llm.api", inf.API)
		if inf.RequestModel != "" {
			m.PutStr("gen_ai.request.model", inf.RequestModel)
		}
		if inf.ResponseModel != "" {
			m.PutStr("gen_ai.response.model", inf.ResponseModel)
		}
		if inf.ResponseID != "" {
			m.PutStr("gen_ai.response.id", inf.ResponseID)
		}
		if inf.HasInputTokens {
			m.PutInt("gen_ai.usage.input_tokens", inf.InputTokens)
		}
		if inf.HasOutputTokens {
			m.PutInt("gen_ai.usage.output_tokens", inf.OutputTokens)
		}
		if len(inf.FinishReasons) > 0 {
			putStrings(m, "gen_ai.response.finish_reasons", inf.FinishReasons)
		}
		if len(inf.ToolCalls) > 0 {
			names := make([]string, len(inf.ToolCalls))
			ids := make([]string, len(inf.ToolCalls))
			for i, tc := range inf.ToolCalls {
				names[i], ids[i] = tc.Name, tc.ID
			}
			putStrings(m, "agenttrail.tool_calls.names", names)
			putStrings(m, "agenttrail.tool_calls.ids", ids)
		}
		if inf.Stream {
			m.PutBool("agenttrail.llm.stream", true)
		}
		m.PutStr("http.request.method", inf.Method)
		if inf.ProtocolVersion != "" {
			m.PutStr("network.protocol.version", inf.ProtocolVersion)
		}
		path, _ := e.Redactor.String(inf.Path)
		m.PutStr("url.path", path)
		PutServer(m, inf.Host)
		if inf.Status != 0 {
			m.PutInt("http.response.status_code", int64(inf.Status))
		}
		switch {
		case inf.ErrorType != "":
			m.PutStr("error.type", inf.ErrorType)
		case inf.Status >= 400:
			m.PutStr("error.type", strconv.Itoa(inf.Status))
		}
		m.PutInt("http.request.body.size", inf.RequestBodySize)
		m.PutInt("http.response.body.size", inf.ResponseBodySize)
		if inf.RequestProblem != "" {
			m.PutStr("agenttrail.llm.request.unparsed", inf.RequestProblem)
		}
		if inf.ResponseProblem != "" {
			m.PutStr("agenttrail.llm.response.unparsed", inf.ResponseProblem)
		}
		putLibrary(m, meta)
		m.PutInt("thread.id", int64(meta.Hdr.TID))
		PutStack(m, meta.Stack)
		if content {
			e.putContent(m, "gen_ai.input.messages", inf.InputMessages)
			e.putContent(m, "gen_ai.output.messages", inf.OutputMessages)
		}
	}
	d.Events = func(evs ptrace.SpanEventSlice) {
		for _, tc := range inf.ToolCalls {
			ev := evs.AppendEmpty()
			ev.SetName("gen_ai.tool.call")
			ev.SetTimestamp(pcommon.NewTimestampFromTime(end))
			ev.Attributes().PutStr("gen_ai.tool.name", tc.Name)
			ev.Attributes().PutStr("gen_ai.tool.call.id", tc.ID)
		}
	}
	return d
}

// putContent exports message content through the redaction policy, bounded.
func (e *Emitter) putContent(m pcommon.Map, key, raw string) {
	if raw == "" {
		return
	}
	truncated := false
	if len(raw) > MaxMessageContent {
		raw, truncated = raw[:MaxMessageContent], true
	}
	v, counts, _ := e.Redactor.Value(redact.PolicyRedacted, []byte(raw), truncated)
	m.PutStr(key, v)
	if n := counts.Total(); n > 0 {
		m.PutInt(key+".redactions", int64(n))
	}
}

func putStrings(m pcommon.Map, key string, vals []string) {
	s := m.PutEmptySlice(key)
	for _, v := range vals {
		s.AppendEmpty().SetStr(v)
	}
}
