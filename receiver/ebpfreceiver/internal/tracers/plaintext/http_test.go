package plaintext

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/httpspans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

const agentPID = 4242

func newConsumer(t *testing.T) (*Consumer, *spans.Builder) {
	t.Helper()
	b := spans.NewBuilder(spans.Options{})
	b.AddProcess(spans.Process{PID: agentPID, Target: "agent"})
	c, err := New(tracer.Env{Logger: zap.NewNop(), Builder: b, Telemetry: &tracer.Telemetry{Meter: noop.NewMeterProvider().Meter("test")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, b
}

func flushed(b *spans.Builder) []ptrace.Span {
	td := b.Flush()
	var out []ptrace.Span
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		ss := td.ResourceSpans().At(i).ScopeSpans()
		for j := 0; j < ss.Len(); j++ {
			for k := 0; k < ss.At(j).Spans().Len(); k++ {
				out = append(out, ss.At(j).Spans().At(k))
			}
		}
	}
	return out
}

func get(s ptrace.Span, k string) string {
	v, ok := s.Attributes().Get(k)
	if !ok {
		return "<missing>"
	}
	return v.AsString()
}

// tcp feeds one call's bytes on a TCP socket of the agent.
func tcp(c *Consumer, dir spans.Direction, data string, at time.Time) {
	c.Payload(&sockets.Payload{Header: spans.Header{Time: at, PID: agentPID, TID: agentPID}, Socket: spans.SocketID{Sock: 0xffff0001, Ino: 77},
		Direction: dir, Transport: spans.TransportTCP, Bytes: uint64(len(data)), Data: []byte(data), Parent: spans.Parent{PID: agentPID}})
}

func TestPlainHTTPInference(t *testing.T) {
	c, b := newConsumer(t)
	at := time.Unix(1_700_000_000, 0)
	body := `{"model":"llama3","messages":[{"role":"user","content":"hi"}]}`
	tcp(c, spans.Egress, "POST /v1/chat/completions HTTP/1.1\r\nHost: ollama:11434\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body, at)
	resp := `{"id":"c1","model":"llama3","choices":[{"index":0,"message":{"role":"assistant","content":"yo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2}}`
	tcp(c, spans.Ingress, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(resp))+"\r\n\r\n"+resp, at.Add(time.Second))
	// Ciphertext is never parsed, whatever the kernel marked.
	tcp(c, spans.Egress, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", at)
	got := flushed(b)
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name() != "chat llama3" || get(s, "gen_ai.usage.input_tokens") != "7" || get(s, "agenttrail.capture.source") != "plaintext" ||
		get(s, "server.address") != "ollama" || get(s, "agenttrail.tls.library") != "<missing>" {
		t.Errorf("span %s: tokens %s source %s server %s", s.Name(), get(s, "gen_ai.usage.input_tokens"), get(s, "agenttrail.capture.source"), get(s, "server.address"))
	}
}

// MCP's streamable HTTP transport: a POSTed tools/call answered as server-sent events is an
// execute_tool span, not a bare POST.
func TestStreamableHTTPToolCall(t *testing.T) {
	c, b := newConsumer(t)
	at := time.Unix(1_700_000_000, 0)
	req := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://x.test/?token=sk-live-0123456789abcdefghijkl"}}}`
	tcp(c, spans.Egress, "POST /mcp HTTP/1.1\r\nHost: tools.internal:8080\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: "+strconv.Itoa(len(req))+"\r\n\r\n"+req, at)
	ev := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"page\"}],\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"fetcher\",\"version\":\"2.0\"}}}}\n\n"
	tcp(c, spans.Ingress, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "+strconv.Itoa(len(ev))+"\r\n\r\n"+ev, at.Add(time.Second))
	got := flushed(b)
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name() != "execute_tool fetch" || get(s, "gen_ai.tool.call.id") != "7" || get(s, "agenttrail.mcp.transport") != "streamable_http" ||
		get(s, "mcp.server.name") != "fetcher" || get(s, "server.address") != "tools.internal" || get(s, "url.path") != "/mcp" ||
		strings.Contains(get(s, "gen_ai.tool.call.arguments"), "sk-live") {
		t.Errorf("span %s: id %s transport %s server %s address %s path %s arguments %s", s.Name(), get(s, "gen_ai.tool.call.id"),
			get(s, "agenttrail.mcp.transport"), get(s, "mcp.server.name"), get(s, "server.address"), get(s, "url.path"), get(s, "gen_ai.tool.call.arguments"))
	}
}

// MCP over HTTPS: the TLS tracer's emitter offers its exchanges to MCPExchange first, so a
// tools/call read from TLS is the same execute_tool span, saying where it was read.
func TestTLSStreamableHTTPIntercepted(t *testing.T) {
	c, b := newConsumer(t)
	em := &httpspans.Emitter{Builder: b, Redactor: redact.New(), Intercept: c.MCPExchange}
	tr := llm.NewTracker(llm.Options{})
	at := time.Unix(1_700_000_000, 0)
	meta := &httpspans.Meta{Parent: spans.Parent{PID: agentPID}, Hdr: spans.Header{Time: at, PID: agentPID, TID: agentPID}, TLSLibrary: "go"}
	key := llm.Key{PID: agentPID, Conn: 1}
	req := `{"jsonrpc":"2.0","id":"r-1","method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}`
	var exs []llm.Exchange
	exs = append(exs, tr.Data(key, llm.Write, []byte("POST /mcp HTTP/1.1\r\nHost: mcp.example.com\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(req))+"\r\n\r\n"+req), 0, at, meta)...)
	resp := `{"jsonrpc":"2.0","id":"r-1","result":{"content":[{"type":"text","text":"found"}]}}`
	exs = append(exs, tr.Data(key, llm.Read, []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(resp))+"\r\n\r\n"+resp), 0, at.Add(time.Second), meta)...)
	for _, ex := range exs {
		em.Emit(ex)
	}
	got := flushed(b)
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name() != "execute_tool search" || get(s, "gen_ai.tool.call.id") != "r-1" || get(s, "agenttrail.capture.source") != "tls" ||
		get(s, "agenttrail.tls.library") != "go" || get(s, "server.address") != "mcp.example.com" {
		t.Errorf("span %s: id %s source %s library %s server %s", s.Name(), get(s, "gen_ai.tool.call.id"), get(s, "agenttrail.capture.source"),
			get(s, "agenttrail.tls.library"), get(s, "server.address"))
	}
}
