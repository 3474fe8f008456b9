package storyjoinprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/agenttrail/agenttrail/internal/sockspan"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor/internal/metadata"
)

const ms = time.Millisecond

// agent on node-a (10.0.0.1): a tool span that connected to the service at 10.0.0.2:8080 from
// port 40001 and sent its request (0-50 ms).
func agentBatch(trace byte, clientIP string, clientPort int64) ptrace.Traces {
	a := newNode("node-a", "agent")
	a.span(tid(trace), sid(trace), pcommon.SpanID{}, "execute_tool fetch", ptrace.SpanKindInternal, 0, 60*ms)
	a.socket(tid(trace), sid(trace+1), sid(trace), clientIP, "10.0.0.2", clientPort, 8080, 1*ms, 50*ms)
	return a.td
}

// service on node-b: the accept of the client's connection (its own trace), then the handler's
// trace: the request's receive on the accepted connection and an outbound connect.
func serviceBatch(acceptTrace, handlerTrace byte, clientIP string, clientPort int64, serverIP string) ptrace.Traces {
	b := newNode("node-b", "tool-service")
	b.accept(tid(acceptTrace), sid(acceptTrace), clientIP, clientPort, 1*ms)
	b.span(tid(handlerTrace), sid(handlerTrace), pcommon.SpanID{}, "handle", ptrace.SpanKindInternal, 2*ms, 40*ms)
	b.socket(tid(handlerTrace), sid(handlerTrace+1), sid(handlerTrace), serverIP, clientIP, 8080, clientPort, 2*ms, 39*ms)
	b.span(tid(handlerTrace), sid(handlerTrace+2), sid(handlerTrace), "connect", ptrace.SpanKindClient, 10*ms, 11*ms)
	return b.td
}

func TestJoinClientFirst(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	h.send(agentBatch(1, "10.0.0.1", 40001))
	assert.Equal(t, 2, h.out().SpanCount(), "client spans go on at once")
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	out := h.out()
	require.Equal(t, 4, out.SpanCount())
	byName := spansByName(out)
	for _, name := range []string{"accept", "handle", "connect", "send 10.0.0.1"} {
		assert.Equal(t, tid(1), byName[name].TraceID(), name)
	}
	// Both server roots hang under the tool span; children keep their parents.
	assert.Equal(t, sid(1), byName["accept"].ParentSpanID())
	assert.Equal(t, sid(1), byName["handle"].ParentSpanID())
	assert.Equal(t, sid(0x20), byName["connect"].ParentSpanID())
	acc := byName["accept"].Attributes().AsRaw()
	assert.Equal(t, "client_endpoint", acc["agenttrail.join.match"], "an accept without local address matches by the client's endpoint")
	assert.Equal(t, "node-a", acc["agenttrail.join.client.node"])
	assert.Equal(t, "node-b", acc["agenttrail.join.server.node"])
	assert.Equal(t, tid(0x10).String(), acc["agenttrail.join.original_trace_id"])
	assert.Equal(t, "four_tuple", byName["handle"].Attributes().AsRaw()["agenttrail.join.match"])
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.joined", "match", "four_tuple"))
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.joined", "match", "client_endpoint"))
}

func TestJoinServerFirstWaits(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	assert.Equal(t, 0, h.out().SpanCount(), "the server half waits for its client")
	h.advance(time.Second)
	assert.Equal(t, 0, h.out().SpanCount())

	// A later span of a waiting trace waits with it.
	b := newNode("node-b", "tool-service")
	b.span(tid(0x20), sid(0x30), sid(0x20), "read /srv/customers.csv", ptrace.SpanKindInternal, 5*ms, 6*ms)
	h.send(b.td)
	assert.Equal(t, 0, h.out().SpanCount())

	h.send(agentBatch(1, "10.0.0.1", 40001))
	out := h.out()
	require.Equal(t, 7, out.SpanCount(), "the client's batch carries the released server half")
	sockspan.EachSpan(out, func(_ pcommon.Resource, s ptrace.Span) { assert.Equal(t, tid(1), s.TraceID(), s.Name()) })
	assert.Equal(t, sid(0x20), spansByName(out)["read /srv/customers.csv"].ParentSpanID())

	// Spans of a joined trace that come later follow it.
	b = newNode("node-b", "tool-service")
	b.span(tid(0x20), sid(0x31), sid(0x20), "late", ptrace.SpanKindInternal, 41*ms, 42*ms)
	h.send(b.td)
	out = h.out()
	require.Equal(t, 1, out.SpanCount())
	assert.Equal(t, tid(1), spansByName(out)["late"].TraceID())
	assert.EqualValues(t, 0, h.counter("agenttrail.storyjoin.unjoined", "", ""))
}

func TestUnjoinedAfterWait(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	h := newHarness(t, cfg)
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	h.advance(cfg.Wait - ms)
	assert.Equal(t, 0, h.out().SpanCount())
	h.advance(ms)
	out := h.out()
	require.Equal(t, 4, out.SpanCount(), "exported unjoined, whole")
	assert.Equal(t, tid(0x20), spansByName(out)["handle"].TraceID())
	assert.True(t, spansByName(out)["handle"].ParentSpanID().IsEmpty())
	assert.EqualValues(t, 2, h.counter("agenttrail.storyjoin.unjoined", "reason", "timeout"))

	// The client half coming after that joins nothing: those spans are gone on.
	h.send(agentBatch(1, "10.0.0.1", 40001))
	assert.Equal(t, 2, h.out().SpanCount())
}

func TestBufferFullPassesUnjoined(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.MaxPendingSpans = 2
	h := newHarness(t, cfg)
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	out := h.out()
	assert.Equal(t, 3, out.SpanCount(), "the handler's three spans do not fit and go on at once")
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.unjoined", "reason", "buffer_full"))
}

func TestShutdownFlushesWaiting(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	require.NoError(t, h.p.Shutdown(t.Context()))
	assert.Equal(t, 4, h.out().SpanCount())
	assert.EqualValues(t, 2, h.counter("agenttrail.storyjoin.unjoined", "reason", "shutdown"))
}

// Two agents call the same service at the same time: each server trace goes under its own
// client's tool span, told apart by the client endpoints.
func TestConcurrentClientsNotMixed(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	h.send(agentBatch(1, "10.0.0.1", 40001))
	h.send(agentBatch(5, "10.0.0.3", 40001)) // same port, another pod
	h.send(agentBatch(9, "10.0.0.1", 40002)) // same pod, another connection
	h.out()
	h.send(serviceBatch(0x10, 0x20, "10.0.0.3", 40001, "10.0.0.2"))
	h.send(serviceBatch(0x40, 0x50, "10.0.0.1", 40002, "10.0.0.2"))
	h.send(serviceBatch(0x70, 0x80, "10.0.0.1", 40001, "10.0.0.2"))
	out := h.out()
	want := map[pcommon.TraceID]pcommon.TraceID{tid(0x20): tid(5), tid(0x50): tid(9), tid(0x80): tid(1)}
	seen := 0
	sockspan.EachSpan(out, func(_ pcommon.Resource, s ptrace.Span) {
		if s.Name() != "handle" {
			return
		}
		orig, _ := s.Attributes().Get("agenttrail.join.original_trace_id")
		for from, to := range want {
			if orig.Str() == from.String() {
				assert.Equal(t, to, s.TraceID())
				seen++
			}
		}
	})
	assert.Equal(t, 3, seen)
}

// One keep-alive connection, two tool calls: each request's server trace goes under the call
// whose send interval holds it.
func TestReusedConnectionByTime(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	a := newNode("node-a", "agent")
	a.span(tid(1), sid(1), pcommon.SpanID{}, "tool one", ptrace.SpanKindInternal, 0, 60*ms)
	a.socket(tid(1), sid(2), sid(1), "10.0.0.1", "10.0.0.2", 40001, 8080, 1*ms, 50*ms)
	a.span(tid(3), sid(3), pcommon.SpanID{}, "tool two", ptrace.SpanKindInternal, 500*ms, 600*ms)
	a.socket(tid(3), sid(4), sid(3), "10.0.0.1", "10.0.0.2", 40001, 8080, 501*ms, 550*ms)
	h.send(a.td)
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	b := newNode("node-b", "tool-service")
	b.span(tid(0x30), sid(0x30), pcommon.SpanID{}, "handle two", ptrace.SpanKindInternal, 502*ms, 540*ms)
	b.socket(tid(0x30), sid(0x31), sid(0x30), "10.0.0.2", "10.0.0.1", 8080, 40001, 502*ms, 539*ms)
	h.send(b.td)
	byName := spansByName(h.out())
	assert.Equal(t, tid(1), byName["handle"].TraceID())
	assert.Equal(t, tid(3), byName["handle two"].TraceID())
	assert.Equal(t, sid(3), byName["handle two"].ParentSpanID())
}

// A Service VIP: the client saw 10.96.0.10:80, the server its pod address 10.0.0.2:8080. The
// client's own endpoint (not rewritten by kube-proxy's DNAT) still matches.
func TestServiceVIPMatchesByClientEndpoint(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	a := newNode("node-a", "agent")
	a.span(tid(1), sid(1), pcommon.SpanID{}, "tool", ptrace.SpanKindInternal, 0, 60*ms)
	a.socket(tid(1), sid(2), sid(1), "10.0.0.1", "10.96.0.10", 40001, 80, 1*ms, 50*ms)
	h.send(a.td)
	h.send(serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"))
	byName := spansByName(h.out())
	assert.Equal(t, tid(1), byName["handle"].TraceID())
	assert.Equal(t, "client_endpoint", byName["handle"].Attributes().AsRaw()["agenttrail.join.match"])
}

// Out of the window: a server span 10 s after the client's interval is another connection's.
func TestOutsideWindowNotJoined(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	h := newHarness(t, cfg)
	h.send(agentBatch(1, "10.0.0.1", 40001))
	h.out()
	b := newNode("node-b", "tool-service")
	b.accept(tid(0x10), sid(0x10), "10.0.0.1", 40001, 10*time.Second)
	h.send(b.td)
	h.advance(cfg.Wait)
	out := h.out()
	require.Equal(t, 1, out.SpanCount())
	assert.Equal(t, tid(0x10), spansByName(out)["accept"].TraceID())
}

// Loopback is the same endpoint only on one node: 127.0.0.1:40001 on node-a is not node-b's.
func TestLoopbackScopedToNode(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	h := newHarness(t, cfg)
	h.send(agentBatch(1, "127.0.0.1", 40001))
	h.out()
	b := newNode("node-b", "tool-service")
	s := b.accept(tid(0x10), sid(0x10), "127.0.0.1", 40001, 1*ms)
	s.Attributes().PutInt("agenttrail.netns", 4026531840)
	h.send(b.td)
	h.advance(cfg.Wait)
	assert.Equal(t, tid(0x10), spansByName(h.out())["accept"].TraceID(), "not joined across nodes")

	// The same on node-a and its namespace joins.
	c := newNode("node-a", "tool-service")
	s = c.accept(tid(0x11), sid(0x11), "127.0.0.1", 40001, 2*ms)
	s.Attributes().PutInt("agenttrail.netns", 4026531840)
	h.send(c.td)
	assert.Equal(t, tid(1), spansByName(h.out())["accept"].TraceID())
}

// Hostile attributes: bad addresses and ports are counted and never used as keys.
func TestUnusableAddresses(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	a := newNode("node-a", "agent")
	s := a.socket(tid(1), sid(2), sid(1), "10.0.0.1", "10.0.0.2", 40001, 8080, 1*ms, 50*ms)
	s.Attributes().PutInt("network.peer.port", 70000)
	s = a.socket(tid(1), sid(3), sid(1), "10.0.0.1", "10.0.0.2", 40001, 8080, 1*ms, 50*ms)
	s.Attributes().PutStr("network.peer.address", "not-an-ip")
	s = a.socket(tid(1), sid(4), sid(1), "10.0.0.1", "10.0.0.2", 40001, 8080, 1*ms, 50*ms)
	s.Attributes().PutStr("network.local.port", "-1")
	h.send(a.td)
	assert.Equal(t, 3, h.out().SpanCount())
	assert.EqualValues(t, 2, h.counter("agenttrail.storyjoin.unusable", "reason", "bad_port"))
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.unusable", "reason", "bad_address"))
	assert.Equal(t, 0, h.j.clientCount)
}

func TestBoundsForget(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.MaxClients = 2
	h := newHarness(t, cfg)
	for i := range 3 {
		h.send(agentBatch(byte(1+4*i), "10.0.0.1", int64(40001+i)))
	}
	assert.Equal(t, 2, h.j.clientCount)
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.forgotten", "reason", "max_clients"))

	// client_ttl forgets the rest.
	h.advance(cfg.ClientTTL + time.Second)
	assert.Equal(t, 0, h.j.clientCount)
	assert.Empty(t, h.j.clients)
}

// A chain: agent -> service B -> service C. C's trace joins under B's outbound span, which
// itself was joined under the agent's tool span: all one trace.
func TestChainedJoin(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	// C first, then B, then the agent: everything waits and resolves at the end.
	c := newNode("node-c", "data-api")
	c.accept(tid(0x60), sid(0x60), "10.0.0.2", 50001, 12*ms)
	c.span(tid(0x61), sid(0x61), pcommon.SpanID{}, "serve", ptrace.SpanKindInternal, 13*ms, 20*ms)
	c.socket(tid(0x61), sid(0x62), sid(0x61), "10.0.0.5", "10.0.0.2", 9000, 50001, 13*ms, 19*ms)
	h.send(c.td)
	b := newNode("node-b", "tool-service")
	b.accept(tid(0x10), sid(0x10), "10.0.0.1", 40001, 1*ms)
	b.span(tid(0x20), sid(0x20), pcommon.SpanID{}, "handle", ptrace.SpanKindInternal, 2*ms, 40*ms)
	b.socket(tid(0x20), sid(0x21), sid(0x20), "10.0.0.2", "10.0.0.1", 8080, 40001, 2*ms, 39*ms)
	b.socket(tid(0x20), sid(0x22), sid(0x20), "10.0.0.2", "10.0.0.5", 50001, 9000, 11*ms, 21*ms)
	h.send(b.td)
	assert.Equal(t, 0, h.out().SpanCount())
	h.send(agentBatch(1, "10.0.0.1", 40001))
	out := h.out()
	require.Equal(t, 9, out.SpanCount())
	sockspan.EachSpan(out, func(_ pcommon.Resource, s ptrace.Span) { assert.Equal(t, tid(1), s.TraceID(), s.Name()) })
	assert.Equal(t, sid(0x20), spansByName(out)["serve"].ParentSpanID(), "C's work under B's handler")
}

// The handler's trace came without the accept (before it, or the accept was never seen): its
// I/O on the connection of a client span already seen still makes it the server side.
func TestServerIOWithoutAccept(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	h.send(agentBatch(1, "10.0.0.1", 40001))
	b := newNode("node-b", "tool-service")
	b.span(tid(0x20), sid(0x20), pcommon.SpanID{}, "handle", ptrace.SpanKindInternal, 2*ms, 40*ms)
	b.socket(tid(0x20), sid(0x21), sid(0x20), "10.0.0.2", "10.0.0.1", 8080, 40001, 2*ms, 39*ms)
	h.send(b.td)
	byName := spansByName(h.out())
	assert.Equal(t, tid(1), byName["handle"].TraceID())
	assert.Equal(t, "four_tuple", byName["handle"].Attributes().AsRaw()["agenttrail.join.match"])
}

// The handler's trace first, without its accept and before its client's span (its agent
// delivered it before the accept's batch, the client's node later): the ports say which end
// served, so it waits for its client rather than going on unjoined, and the server's span is
// not taken for a client's (the real client's span, whose port is ephemeral, is not then taken
// for the server side of it).
func TestServerIOFirstWithoutAcceptWaits(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	h := newHarnessLogged(t, createDefaultConfig().(*Config), zap.New(core))
	b := newNode("node-b", "tool-service")
	b.span(tid(0x20), sid(0x20), pcommon.SpanID{}, "handle", ptrace.SpanKindInternal, 2*ms, 40*ms)
	b.socket(tid(0x20), sid(0x21), sid(0x20), "10.0.0.2", "10.0.0.1", 8080, 40001, 2*ms, 39*ms)
	h.send(b.td)
	assert.Equal(t, 0, h.out().SpanCount(), "the handler's trace waits for its client")
	h.advance(time.Second)
	h.send(agentBatch(1, "10.0.0.1", 40001))
	byName := spansByName(h.out())
	assert.True(t, byName["execute_tool fetch"].ParentSpanID().IsEmpty(), "the agent's tool span stays a root")
	assert.Equal(t, tid(1), byName["handle"].TraceID())
	assert.Equal(t, sid(1), byName["handle"].ParentSpanID())
	assert.Equal(t, "four_tuple", byName["handle"].Attributes().AsRaw()["agenttrail.join.match"])
	assert.EqualValues(t, 1, h.counter("agenttrail.storyjoin.joined", "match", "four_tuple"))
	assert.EqualValues(t, 0, h.counter("agenttrail.storyjoin.unjoined", "", ""))
	// The decisions are logged at debug level, with what made the trace server-side.
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message+" by="+e.ContextMap()["by"].(string))
	}
	assert.Equal(t, []string{"storyjoin: waiting for the client half by=ports", "storyjoin: joined a waiting trace by=ports"}, msgs)
}

// tests/crossnode's flake: two agents in one pod call one service at once; each handler's
// trace is apart from its accept's and comes first, the accepts after, the clients last and in
// the other order. Each handler still goes under its own client's tool span.
func TestConcurrentHandlersBeforeAcceptsAndClients(t *testing.T) {
	h := newHarness(t, createDefaultConfig().(*Config))
	b := newNode("node-b", "tool-service")
	b.span(tid(0x20), sid(0x20), pcommon.SpanID{}, "handle alpha", ptrace.SpanKindInternal, 2*ms, 40*ms)
	b.socket(tid(0x20), sid(0x21), sid(0x20), "10.0.0.2", "10.0.0.1", 8080, 40001, 2*ms, 39*ms)
	b.span(tid(0x50), sid(0x50), pcommon.SpanID{}, "handle beta", ptrace.SpanKindInternal, 3*ms, 41*ms)
	b.socket(tid(0x50), sid(0x51), sid(0x50), "10.0.0.2", "10.0.0.1", 8080, 40002, 3*ms, 40*ms)
	h.send(b.td)
	b = newNode("node-b", "tool-service")
	b.accept(tid(0x10), sid(0x10), "10.0.0.1", 40001, 1*ms)
	b.accept(tid(0x40), sid(0x40), "10.0.0.1", 40002, 1*ms)
	h.send(b.td)
	assert.Equal(t, 0, h.out().SpanCount(), "every server half waits")
	h.send(agentBatch(9, "10.0.0.1", 40002))
	h.send(agentBatch(1, "10.0.0.1", 40001))
	byName := spansByName(h.out())
	assert.Equal(t, tid(1), byName["handle alpha"].TraceID())
	assert.Equal(t, sid(1), byName["handle alpha"].ParentSpanID())
	assert.Equal(t, tid(9), byName["handle beta"].TraceID())
	assert.Equal(t, sid(9), byName["handle beta"].ParentSpanID())
	assert.EqualValues(t, 4, h.counter("agenttrail.storyjoin.joined", "", ""))
	assert.EqualValues(t, 0, h.counter("agenttrail.storyjoin.unjoined", "", ""))
}

// The processor's own goroutine exports a trace whose wait is over (no test clock here), and
// only then is the request that brought it answered.
func TestWaitExpiresOnItsOwn(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Wait = 50 * ms
	sink := new(consumertest.TracesSink)
	p, err := NewFactory().CreateTraces(t.Context(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context(), componenttest.NewNopHost()))
	start := time.Now()
	require.NoError(t, p.ConsumeTraces(t.Context(), serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2")))
	assert.GreaterOrEqual(t, time.Since(start), cfg.Wait, "answered before the wait was over")
	assert.Equal(t, 4, sink.SpanCount(), "answered before the held trace was passed on")
	require.NoError(t, p.Shutdown(t.Context()))
	require.NoError(t, p.Shutdown(t.Context()), "shutdown twice")
}
