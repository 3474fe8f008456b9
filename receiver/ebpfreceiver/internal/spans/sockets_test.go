package spans

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

var (
	sink    = netip.MustParseAddrPort("203.0.113.9:443")
	local   = netip.MustParseAddrPort("10.0.0.2:40000")
	sockOne = SocketID{Sock: 0xffff888000001000, Ino: 77}
)

func send(id SocketID, peer netip.AddrPort, n uint64) SocketIO {
	return SocketIO{Socket: id, Direction: Egress, Bytes: n, Transport: TransportTCP, Peer: peer, Local: local, NetNS: 4026531840}
}

func allSpans(t *testing.T, b *Builder) []ptrace.Span {
	t.Helper()
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

func named(spans []ptrace.Span, name string) []ptrace.Span {
	var out []ptrace.Span
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrInt(t *testing.T, s ptrace.Span, key string) int64 {
	t.Helper()
	v, ok := s.Attributes().Get(key)
	if !ok {
		t.Fatalf("%s: no %s", s.Name(), key)
	}
	return v.Int()
}

func attrStr(t *testing.T, s ptrace.Span, key string) string {
	t.Helper()
	v, ok := s.Attributes().Get(key)
	if !ok {
		t.Fatalf("%s: no %s", s.Name(), key)
	}
	return v.Str()
}

// TestSocketAggregateUnderCall: many sends of one call to one peer make one child span, with
// the sum of bytes and calls, emitted when the call returns, timed from the first to the last.
func TestSocketAggregateUnderCall(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	first := c.at(0xa0, 1)
	b.SocketIO(first, send(sockOne, sink, 100))
	for i := 0; i < 49; i++ {
		b.SocketIO(c.at(0xa0, 1), send(sockOne, sink, 10))
	}
	last := c.at(0xa0, 1)
	in := send(sockOne, sink, 5)
	in.Direction = Ingress
	b.SocketIO(last, in)
	if b.SocketAggregates() != 1 {
		t.Fatalf("%d aggregates", b.SocketAggregates())
	}
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)
	got := allSpans(t, b)
	tool := named(got, "execute_tool customer-data-export")
	sends := named(got, "send 203.0.113.9:443")
	if len(tool) != 1 || len(sends) != 1 || len(got) != 2 {
		t.Fatalf("%d spans, %d sends", len(got), len(sends))
	}
	s := sends[0]
	requireChild(t, tool[0], s)
	if s.Kind() != ptrace.SpanKindClient || !s.StartTimestamp().AsTime().Equal(first.Time) || !s.EndTimestamp().AsTime().Equal(last.Time) {
		t.Errorf("kind %v, %v..%v", s.Kind(), s.StartTimestamp(), s.EndTimestamp())
	}
	for key, want := range map[string]int64{"agenttrail.egress.bytes": 590, "agenttrail.egress.calls": 50,
		"agenttrail.ingress.bytes": 5, "agenttrail.ingress.calls": 1, "network.peer.port": 443, "network.local.port": 40000,
		"agenttrail.netns": 4026531840, "agenttrail.socket.count": 1} {
		if got := attrInt(t, s, key); got != want {
			t.Errorf("%s = %d, want %d", key, got, want)
		}
	}
	for key, want := range map[string]string{"network.peer.address": "203.0.113.9", "network.transport": "tcp", "network.type": "ipv4",
		"network.local.address": "10.0.0.2", "agenttrail.egress.attribution": AttributionDirect,
		"agenttrail.socket.connected": ConnectedUnknown} {
		if got := attrStr(t, s, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if _, ok := s.Attributes().Get("agenttrail.connection.age_ms"); ok {
		t.Error("connection age without a seen connect")
	}
}

// TestSocketConnectedEarlier: a keep-alive connection opened under an earlier call: the send
// under a later call in another trace says so, with the connection's age; a connection opened
// in the same trace says this_trace; one never seen says before_tracing.
func TestSocketConnectedEarlier(t *testing.T) {
	b := NewBuilder(Options{ConnectsTraced: true})
	b.AddProcess(Process{PID: pid, Target: "agent", IsGo: true})
	c := &clock{t: time.Unix(1700000000, 0)}
	b.FuncEntry(c.at(0xa0, 1), probeChat, nil)
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "connect", FD: 7, Peer: sink})
	exit := c.at(0xa0, 1)
	b.SocketOf(exit, sockOne)
	b.SyscallExit(exit, 0, netip.AddrPort{})
	b.SocketIO(c.at(0xa0, 1), send(sockOne, sink, 10))
	b.FuncReturn(c.at(0xa0, 1), probeChat.ID)
	c.t = c.t.Add(41 * time.Second)
	b.FuncEntry(c.at(0xb0, 2), probeTool, nil)
	b.SocketIO(c.at(0xb0, 2), send(sockOne, sink, 8400))
	other := SocketID{Sock: 0xffff888000002000, Ino: 78}
	b.SocketIO(c.at(0xb0, 2), send(other, netip.MustParseAddrPort("198.51.100.1:80"), 1))
	b.FuncReturn(c.at(0xb0, 2), probeTool.ID)
	got := allSpans(t, b)
	sends := named(got, "send 203.0.113.9:443")
	if len(sends) != 2 {
		t.Fatalf("%d sends", len(sends))
	}
	chat, tool := named(got, "chat model-x")[0], named(got, "execute_tool customer-data-export")[0]
	for _, s := range sends {
		switch s.ParentSpanID() {
		case chat.SpanID():
			if got := attrStr(t, s, "agenttrail.socket.connected"); got != ConnectedThisTrace {
				t.Errorf("first send: connected %q", got)
			}
		case tool.SpanID():
			if got := attrStr(t, s, "agenttrail.socket.connected"); got != ConnectedEarlier {
				t.Errorf("reused connection: connected %q", got)
			}
			if age := attrInt(t, s, "agenttrail.connection.age_ms"); age < 41000 || age > 42000 {
				t.Errorf("connection age %d ms", age)
			}
		default:
			t.Errorf("send under %s", s.ParentSpanID())
		}
	}
	unseen := named(got, "send 198.51.100.1:80")
	if len(unseen) != 1 || attrStr(t, unseen[0], "agenttrail.socket.connected") != ConnectedBeforeTracing {
		t.Fatalf("unseen connect: %d spans", len(unseen))
	}
}

// TestSocketHandoff: a Go goroutine without a call of its own (net/http's connection writer)
// sends while one tool call is open elsewhere in the process: the send belongs to the tool.
// With two tool calls open it stays with what the goroutine inherited.
func TestSocketHandoff(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probePrompt, nil)
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	b.GoroutineCreate(c.at(0xa0, 1), 0xc0)             // the writer, created under the tool call... of an earlier request in real life
	b.SocketIO(c.at(0xd0, 3), send(sockOne, sink, 10)) // another goroutine without calls
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)
	b.FuncReturn(c.at(0xa0, 1), probePrompt.ID)
	got := allSpans(t, b)
	tool := named(got, "execute_tool customer-data-export")[0]
	s := named(got, "send 203.0.113.9:443")[0]
	requireChild(t, tool, s)
	if got := attrStr(t, s, "agenttrail.egress.attribution"); got != AttributionHandoff {
		t.Errorf("attribution %q", got)
	}

	// Two tool calls open: no guess; the goroutine inherited nothing, so a root span.
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	b.FuncEntry(c.at(0xa1, 2), probeTool, nil)
	b.SocketIO(c.at(0xd0, 3), send(sockOne, sink, 10))
	b.ProcessExit(c.at(0, pid))
	got = allSpans(t, b)
	s = named(got, "send 203.0.113.9:443")[0]
	if !s.ParentSpanID().IsEmpty() || attrStr(t, s, "agenttrail.egress.attribution") != AttributionNone {
		t.Errorf("parent %s attribution %q", s.ParentSpanID(), attrStr(t, s, "agenttrail.egress.attribution"))
	}
}

// TestSocketWindow: I/O under a long-lived call, and I/O with no call at all, is emitted one
// window at a time; nothing is held past the window or lost at exit.
func TestSocketWindow(t *testing.T) {
	b := NewBuilder(Options{SocketWindow: time.Second})
	b.AddProcess(Process{PID: pid, Target: "agent"})
	c := &clock{t: time.Unix(1700000000, 0)}
	b.FuncEntry(c.at(0, 1), probeA, nil)
	b.SocketIO(c.at(0, 1), send(sockOne, sink, 1))
	b.SocketIO(c.at(0, 9), send(sockOne, sink, 2)) // a thread with no call: a root aggregate
	b.FlushSockets(c.t.Add(500 * time.Millisecond))
	if n := len(allSpans(t, b)); n != 0 {
		t.Fatalf("%d spans before the window ended", n)
	}
	b.FlushSockets(c.t.Add(2 * time.Second))
	got := allSpans(t, b)
	if len(got) != 2 {
		t.Fatalf("%d spans after the window", len(got))
	}
	b.SocketIO(c.at(0, 1), send(sockOne, sink, 3))
	b.ProcessExit(c.at(0, pid))
	got = allSpans(t, b)
	sends := named(got, "send 203.0.113.9:443")
	if len(sends) != 1 || attrInt(t, sends[0], "agenttrail.egress.bytes") != 3 {
		t.Fatalf("at exit: %d sends", len(sends))
	}
	if b.SocketAggregates() != 0 || b.OpenSpans() != 0 {
		t.Fatalf("%d aggregates, %d open spans left", b.SocketAggregates(), b.OpenSpans())
	}
}

// TestSocketDNSAndUnknownPeer: DNS names are kept (bounded) and the first one is
// dns.question.name; a peer that could not be read is said, not invented.
func TestSocketDNSAndUnknownPeer(t *testing.T) {
	b, c := newTestBuilder(t)
	b.FuncEntry(c.at(0xa0, 1), probeTool, nil)
	dns := netip.MustParseAddrPort("127.0.0.53:53")
	for i := 0; i < maxDNSNames+4; i++ {
		io := send(SocketID{Sock: uint64(i + 1), Ino: uint64(i + 1)}, dns, 40)
		io.Transport = TransportUDP
		io.DNSNames = []string{string(rune('a'+i)) + ".exfil.example"}
		b.SocketIO(c.at(0xa0, 1), io)
	}
	unknown := send(sockOne, netip.AddrPort{}, 9)
	unknown.Transport, unknown.PeerUnknown = TransportUDP, true
	b.SocketIO(c.at(0xa0, 1), unknown)
	b.FuncReturn(c.at(0xa0, 1), probeTool.ID)
	got := allSpans(t, b)
	d := named(got, "send 127.0.0.53:53")[0]
	if attrStr(t, d, "dns.question.name") != "a.exfil.example" || attrInt(t, d, "agenttrail.dns.question.count") != maxDNSNames+4 {
		t.Errorf("dns: %v", d.Attributes().AsRaw())
	}
	names, _ := d.Attributes().Get("agenttrail.dns.question.names")
	if names.Slice().Len() != maxDNSNames || attrInt(t, d, "agenttrail.socket.count") != maxDNSNames+4 {
		t.Errorf("names %d, sockets %d", names.Slice().Len(), attrInt(t, d, "agenttrail.socket.count"))
	}
	u := named(got, "send unknown")[0]
	if v, ok := u.Attributes().Get("agenttrail.peer.unknown"); !ok || !v.Bool() {
		t.Error("unknown peer not said")
	}
	if _, ok := u.Attributes().Get("network.peer.address"); ok {
		t.Error("unknown peer has an address")
	}
}

// The exit record's local address and namespace go on the accept and connect spans (the
// storyjoin processor at the gateway matches both ends by them); an unbound local address
// (a connect refused before a port was picked) is left out, the namespace kept.
func TestSocketLocalOnAcceptAndConnect(t *testing.T) {
	b, c := newTestBuilder(t)
	b.SyscallEnter(c.at(0xa0, 1), Syscall{Name: "accept", FD: 3})
	b.SocketLocal(c.at(0xa0, 1), netip.MustParseAddrPort("10.77.0.2:8080"), 4026532000)
	b.SyscallExit(c.at(0xa0, 1), 8, netip.MustParseAddrPort("10.77.0.1:40001"))
	b.SyscallEnter(c.at(0, 2), Syscall{Name: "connect", Peer: netip.MustParseAddrPort("10.77.0.1:9099")})
	b.SocketLocal(c.at(0, 2), netip.MustParseAddrPort("0.0.0.0:0"), 4026532000)
	b.SyscallExit(c.at(0, 2), -111, netip.AddrPort{}) // ECONNREFUSED
	got := spansByName(t, b)
	requireAttrs(t, got["accept"].Attributes(), map[string]any{
		"network.peer.address": "10.77.0.1", "network.peer.port": int64(40001),
		"network.local.address": "10.77.0.2", "network.local.port": int64(8080), "agenttrail.netns": int64(4026532000),
	})
	conn := got["connect"].Attributes()
	if _, ok := conn.Get("network.local.address"); ok {
		t.Errorf("unbound local address on the refused connect: %v", conn.AsRaw())
	}
	requireAttrs(t, conn, map[string]any{"agenttrail.netns": int64(4026532000)})
}
