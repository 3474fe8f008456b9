package storyrouteexporter

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func traceID(n byte) pcommon.TraceID { return pcommon.TraceID{15: n, 0: 0xab} }

func spanID(n byte) pcommon.SpanID { return pcommon.SpanID{7: n, 0: 0xcd} }

// batch builds one resource (a node's agent) holding spans.
type batch struct{ td ptrace.Traces }

func newBatch(node string) (*batch, ptrace.SpanSlice) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("k8s.node.name", node)
	rs.Resource().Attributes().PutStr("service.name", "svc-"+node)
	return &batch{td: td}, rs.ScopeSpans().AppendEmpty().Spans()
}

// tool adds a tool span of trace id (the client's execute_tool).
func tool(spans ptrace.SpanSlice, id pcommon.TraceID, sid pcommon.SpanID, at time.Time) {
	s := spans.AppendEmpty()
	s.SetTraceID(id)
	s.SetSpanID(sid)
	s.SetName("execute_tool fetch")
	s.SetKind(ptrace.SpanKindInternal)
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(200 * time.Millisecond)))
}

// socket adds a socket span: name "send 1.2.3.4:80", "receive ..." (kind CLIENT) or "accept"
// (kind SERVER), with its local and peer endpoints.
func socket(spans ptrace.SpanSlice, id pcommon.TraceID, sid, parent pcommon.SpanID, name, local string, localPort int64, peer string, peerPort int64, at time.Time) ptrace.Span {
	s := spans.AppendEmpty()
	s.SetTraceID(id)
	s.SetSpanID(sid)
	s.SetParentSpanID(parent)
	s.SetName(name)
	s.SetKind(ptrace.SpanKindClient)
	if name == "accept" {
		s.SetKind(ptrace.SpanKindServer)
	}
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(50 * time.Millisecond)))
	a := s.Attributes()
	if local != "" {
		a.PutStr("network.local.address", local)
		a.PutInt("network.local.port", localPort)
	}
	a.PutStr("network.peer.address", peer)
	a.PutInt("network.peer.port", peerPort)
	a.PutInt("agenttrail.netns", 4026531840)
	return s
}

// plain adds a span that is not about a socket (a file read).
func plain(spans ptrace.SpanSlice, id pcommon.TraceID, sid pcommon.SpanID, at time.Time) {
	s := spans.AppendEmpty()
	s.SetTraceID(id)
	s.SetSpanID(sid)
	s.SetName("openat")
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Millisecond)))
}
