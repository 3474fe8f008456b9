package plaintext

import (
	"hash/fnv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/mcp"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/httpspans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
)

// Plain HTTP/1.1 and h2c on the TCP sockets of traced processes (a model served inside the
// cluster: Ollama, vLLM, a LiteLLM gateway, a mesh sidecar doing the TLS) goes through the same
// connection tracker and span making as TLS plaintext (internal/llm, tracers/httpspans): an LLM
// API call becomes the same inference span. An exchange whose body is JSON-RPC (MCP's streamable
// HTTP transport) becomes MCP spans instead.

// isTLSRecord: a TLS record header (handshake, alert, change cipher spec, application data;
// version 3.x). The kernel stops capturing a socket when it sees one; this is the check that
// ciphertext is never parsed even so.
func isTLSRecord(b []byte) bool {
	return len(b) >= 3 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03 && b[2] <= 0x04
}

// socket takes the payload of a TCP send or receive.
func (c *Consumer) socket(p *sockets.Payload) {
	if isTLSRecord(p.Data) {
		c.limit("tls_record")
		return
	}
	dir := llm.Write
	if p.Direction == spans.Ingress {
		dir = llm.Read
	}
	meta := &httpspans.Meta{Parent: p.Parent, Hdr: p.Header}
	total := int(min(p.Bytes, 1<<30))
	c.emitHTTP(c.http.Data(llm.Key{PID: p.Header.PID, Conn: p.Socket.Sock}, dir, p.Data, total, p.Header.Time, meta))
}

func (c *Consumer) emitHTTP(exs []llm.Exchange) {
	for _, ex := range exs {
		c.exchange(ex)
	}
}

// exchange makes the span of one exchange: MCP spans, an inference span, or an HTTP span.
func (c *Consumer) exchange(ex llm.Exchange) {
	if ex.Unparsed != "" {
		// Not an HTTP client's connection (a server's side, or bytes that are not HTTP): its
		// bytes are in the socket's send/receive span already.
		c.limit("not_http_client")
		return
	}
	if ex.Request == nil {
		return
	}
	meta, _ := ex.Request.Meta.(*httpspans.Meta)
	if meta == nil {
		return
	}
	if c.MCPExchange(ex, meta) {
		return
	}
	req := ex.Request
	end := req.End
	if ex.Response != nil {
		end = ex.Response.End
	}
	var d spans.SpanData
	inf, ok := llm.Parse(ex)
	if ok {
		d = c.emitter.InferenceSpan(inf, meta, end)
		c.toolCalls.Record(meta.Hdr.PID, end, inf.ToolCalls)
	} else {
		d = c.emitter.HTTPSpan(ex, meta, end)
	}
	attrs := d.Attributes
	d.Attributes = func(m pcommon.Map) {
		if attrs != nil {
			attrs(m)
		}
		m.PutStr("agenttrail.capture.source", "plaintext")
		m.PutStr("network.transport", "tcp")
	}
	added := false
	if ok {
		added = c.emitter.AddInference(ex, inf, meta, d) // inferred tool spans too, where they apply
	} else {
		added = c.env.Builder.AddSpan(meta.Parent, d)
		c.emitter.NoteReceived(ex, meta) // a document an inferred tool fetched
	}
	if !added {
		c.limit("process_gone")
	}
}

// MCPExchange makes the MCP spans of an exchange whose request is a POST of JSON-RPC (MCP's
// streamable HTTP transport), read in plaintext or from TLS; it returns false for any other.
func (c *Consumer) MCPExchange(ex llm.Exchange, meta *httpspans.Meta) bool {
	req := ex.Request
	if req == nil || meta == nil || req.Method != "POST" || !mcp.LooksLikeJSONRPC(req.Header.Get("Content-Type"), req.Body) {
		return false
	}
	c.mcpExchange(ex, meta)
	return true
}

// mcpExchange reads the JSON-RPC messages of a streamable HTTP exchange (a POST's body; the
// response's JSON or server-sent events) into the MCP tracker, so that they become the same
// spans as over stdio. Requests and responses are paired within the agent's session with the
// server's URL.
func (c *Consumer) mcpExchange(ex llm.Exchange, hm *httpspans.Meta) {
	req := ex.Request
	host, path := req.Header.Get("Host"), req.Target
	h := fnv.New64a()
	_, _ = h.Write([]byte(host))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(path))
	sess := mcp.Key{PID: hm.Hdr.PID, Conn: h.Sum64() | 1<<63} // apart from the inode numbers of stdio sessions
	m := &meta{hdr: hm.Hdr, parent: hm.Parent, transport: spans.TransportTCP, host: host, path: path, tlsLibrary: hm.TLSLibrary}
	var calls []mcp.Call
	msgs := mcp.Body(req.Header.Get("Content-Type"), req.Body, req.Complete, req.Start, req.End, m, 0)
	calls = append(calls, c.tracker.Messages(sess, mcp.Write, msgs)...)
	if resp := ex.Response; resp != nil {
		rm := &meta{hdr: hm.Hdr, parent: hm.Parent, transport: spans.TransportTCP, host: host, path: path, tlsLibrary: hm.TLSLibrary}
		msgs := mcp.Body(resp.Header.Get("Content-Type"), resp.Body, resp.Complete, resp.Start, resp.End, rm, 0)
		calls = append(calls, c.tracker.Messages(sess, mcp.Read, msgs)...)
	}
	for _, call := range calls {
		c.handle(call)
	}
}

func (c *Consumer) limit(reason string) {
	c.limited.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// reportHTTP adds what the connection tracker's bounds cut since the last report.
func (c *Consumer) reportHTTP() {
	st := c.http.Stats()
	add := func(reason string, now, before uint64) {
		if now > before {
			c.limited.Add(tracer.Ctx, int64(now-before), metric.WithAttributes(attribute.String("reason", reason)))
		}
	}
	add("total_buffer", st.BodiesCut+st.ConnectionsCut, c.lastHTTP.BodiesCut+c.lastHTTP.ConnectionsCut)
	add("connection_buffer", st.BodiesOverBuffer, c.lastHTTP.BodiesOverBuffer)
	add("decompressed_size", st.DecodedCut, c.lastHTTP.DecodedCut)
	add("header_size", st.HeadersCut, c.lastHTTP.HeadersCut)
	add("http2_streams", st.StreamsGivenUp, c.lastHTTP.StreamsGivenUp)
	add("pending_requests", st.RequestsGivenUp, c.lastHTTP.RequestsGivenUp)
	add("connection_limit", st.ConnectionsEvicted, c.lastHTTP.ConnectionsEvicted)
	c.lastHTTP = st
}

func (c *Consumer) housekeepHTTP(now time.Time) {
	c.emitHTTP(c.http.Flush(now, 2*time.Second))
	c.emitHTTP(c.http.Expire(now))
	c.reportHTTP()
}
