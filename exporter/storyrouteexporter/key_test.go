package storyrouteexporter

import (
	"maps"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestKeys(t *testing.T) {
	id := traceID(1)
	tests := []struct {
		name   string
		build  func(s ptrace.SpanSlice)
		key    string
		by     string
		counts map[string]int
	}{
		{
			name: "client side: its own address",
			build: func(s ptrace.SpanSlice) {
				tool(s, id, spanID(1), t0)
				socket(s, id, spanID(2), spanID(1), "send 10.1.0.9:8080", "10.0.0.5", 40001, "10.1.0.9", 8080, t0)
			},
			key: "10.0.0.5", by: byClientLocal,
		},
		{
			name: "server side by accept: the client's address",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "accept", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
				plain(s, id, spanID(2), t0)
			},
			key: "10.0.0.5", by: byServerPeer,
		},
		{
			name: "server side by accept without local address (an older agent)",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "accept", "", 0, "10.0.0.5", 40001, t0)
			},
			key: "10.0.0.5", by: byServerPeer,
		},
		{
			name: "server side by ports: a handler's trace apart from its accept",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "receive 10.0.0.5:40001", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
			},
			key: "10.0.0.5", by: byServerPeer,
		},
		{
			name: "a called service that calls another: the caller's address wins",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "accept", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
				socket(s, id, spanID(2), spanID(1), "send 10.2.0.3:9000", "10.1.0.9", 45000, "10.2.0.3", 9000, t0.Add(time.Millisecond))
			},
			key: "10.0.0.5", by: byServerPeer,
		},
		{
			name: "a routable address over loopback (the local model server)",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "send 127.0.0.1:8443", "127.0.0.1", 41000, "127.0.0.1", 8443, t0)
				socket(s, id, spanID(2), spanID(0), "send 10.1.0.9:8080", "10.0.0.5", 40001, "10.1.0.9", 8080, t0.Add(time.Second))
			},
			key: "10.0.0.5", by: byClientLocal,
		},
		{
			name: "loopback only: scoped by node and network namespace",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "send 127.0.0.1:8443", "127.0.0.1", 41000, "127.0.0.1", 8443, t0)
			},
			key: "node-a/4026531840|127.0.0.1", by: byClientLocal,
		},
		{
			name: "the earliest connection of two routable ones",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "send 10.1.0.9:8080", "fd00::5", 40001, "fd00::9", 8080, t0.Add(time.Second))
				socket(s, id, spanID(2), spanID(0), "send 10.1.0.9:8080", "10.0.0.5", 40002, "10.1.0.9", 8080, t0)
			},
			key: "10.0.0.5", by: byClientLocal,
		},
		{
			name: "IPv4-mapped IPv6 is the IPv4 address (the other side may print it either way)",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "accept", "::ffff:10.1.0.9", 8080, "::ffff:10.0.0.5", 40001, t0)
			},
			key: "10.0.0.5", by: byServerPeer,
		},
		{
			name: "no socket span: the trace id",
			build: func(s ptrace.SpanSlice) {
				plain(s, id, spanID(1), t0)
			},
			key: traceIDKey(id), by: byTraceID,
		},
		{
			name: "hostile addresses and ports are counted, never keys",
			build: func(s ptrace.SpanSlice) {
				socket(s, id, spanID(1), spanID(0), "send x", "10.0.0.5", 40001, strings.Repeat("1", 65), 80, t0)
				socket(s, id, spanID(2), spanID(0), "send x", "10.0.0.5", 40001, "fe80::1%eth0", 80, t0)
				socket(s, id, spanID(3), spanID(0), "send x", "10.0.0.5", 40001, "10.1.0.9", 70000, t0)
				socket(s, id, spanID(4), spanID(0), "accept", "10.1.0.9", 8080, "not-an-ip", 40001, t0)
				sp := socket(s, id, spanID(5), spanID(0), "send x", "10.0.0.6", 0, "10.1.0.9", 8080, t0)
				sp.Attributes().PutStr("network.local.port", "123456")
			},
			key: traceIDKey(id), by: byTraceID,
			counts: map[string]int{reasonBadAddress: 3, reasonBadPort: 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, spans := newBatch("node-a")
			tc.build(spans)
			k := newKeyer(100, 100, time.Minute)
			counts := map[string]int{}
			got := k.keys(b.td, counts)
			if len(got) != 1 {
				t.Fatalf("keys of %d traces, want 1: %v", len(got), got)
			}
			if rk := got[id]; rk.key != tc.key || rk.by != tc.by {
				t.Errorf("key %q by %s, want %q by %s", rk.key, rk.by, tc.key, tc.by)
			}
			if tc.counts == nil {
				tc.counts = map[string]int{}
			}
			if !maps.Equal(counts, tc.counts) {
				t.Errorf("counts %v, want %v", counts, tc.counts)
			}
		})
	}
}

// TestBothHalvesOneKey: the client's trace on node A and the server's on node B, in batches of
// their own agents, get the same key; so do the handler's trace apart from its accept's.
func TestBothHalvesOneKey(t *testing.T) {
	ca, cs := newBatch("node-a")
	tool(cs, traceID(1), spanID(1), t0)
	socket(cs, traceID(1), spanID(2), spanID(1), "send 10.96.0.10:80", "10.0.0.5", 40001, "10.96.0.10", 80, t0) // a ClusterIP, DNATed
	sb, ss := newBatch("node-b")
	socket(ss, traceID(2), spanID(3), spanID(0), "accept", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
	socket(ss, traceID(3), spanID(4), spanID(0), "receive 10.0.0.5:40001", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
	ka := newKeyer(100, 100, time.Minute)
	kb := newKeyer(100, 100, time.Minute)
	a := ka.keys(ca.td, map[string]int{})
	b := kb.keys(sb.td, map[string]int{})
	if a[traceID(1)].key != b[traceID(2)].key || a[traceID(1)].key != b[traceID(3)].key {
		t.Errorf("client %v, server accept %v, server handler %v: want one key", a[traceID(1)], b[traceID(2)], b[traceID(3)])
	}
}

// TestInboundHighPort: a server listening in the ephemeral range is known by its accept: a
// later batch's I/O on that connection is the server side (keyed by the client), not a client
// span keyed by the server's own address.
func TestInboundHighPort(t *testing.T) {
	k := newKeyer(100, 100, time.Minute)
	b1, s1 := newBatch("node-b")
	socket(s1, traceID(1), spanID(1), spanID(0), "accept", "10.1.0.9", 45000, "10.0.0.5", 40001, t0)
	k.keys(b1.td, map[string]int{})
	b2, s2 := newBatch("node-b")
	socket(s2, traceID(2), spanID(2), spanID(0), "receive 10.0.0.5:40001", "10.1.0.9", 45000, "10.0.0.5", 40001, t0)
	got := k.keys(b2.td, map[string]int{})[traceID(2)]
	if got.key != "10.0.0.5" || got.by != byServerPeer {
		t.Errorf("key %+v, want the client's address as server_peer", got)
	}
	// Without the accept, the same span is taken for a client's.
	fresh := newKeyer(100, 100, time.Minute)
	if got := fresh.keys(b2.td, map[string]int{})[traceID(2)]; got.by != byClientLocal {
		t.Errorf("without the accept: %+v, want client_local", got)
	}
}

// TestFollow: a later batch of a trace without socket spans goes where its first went, until
// trace_ttl; bounds are counted.
func TestFollow(t *testing.T) {
	now := t0
	k := newKeyer(2, 100, time.Minute)
	k.now = func() time.Time { return now }
	b1, s1 := newBatch("node-b")
	socket(s1, traceID(1), spanID(1), spanID(0), "accept", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
	k.keys(b1.td, map[string]int{})

	later := func() routeKey {
		b, s := newBatch("node-b")
		plain(s, traceID(1), spanID(2), t0)
		return k.keys(b.td, map[string]int{})[traceID(1)]
	}
	now = t0.Add(30 * time.Second)
	if got := later(); got.key != "10.0.0.5" || got.by != byFollowed {
		t.Errorf("later batch: %+v, want followed 10.0.0.5", got)
	}
	now = t0.Add(61 * time.Second)
	if got := later(); got.by != byTraceID {
		t.Errorf("after trace_ttl: %+v, want trace_id", got)
	}

	// max_traces 2: a third trace makes the oldest forgotten, counted.
	counts := map[string]int{}
	for i := byte(10); i < 13; i++ {
		b, s := newBatch("node-a")
		socket(s, traceID(i), spanID(1), spanID(0), "send x", "10.0.0.5", 40001, "10.1.0.9", 8080, t0)
		k.keys(b.td, counts)
	}
	if counts[reasonMaxTraces] != 1 || len(k.traces) != 2 {
		t.Errorf("forgotten %v, remembered %d; want 1 and 2", counts, len(k.traces))
	}
}

// TestKeysOrderFree: the same spans in another order give the same keys.
func TestKeysOrderFree(t *testing.T) {
	build := func(rev bool) ptrace.Traces {
		b, s := newBatch("node-a")
		add := []func(){
			func() { socket(s, traceID(1), spanID(1), spanID(0), "send x", "10.0.0.7", 40001, "10.1.0.9", 8080, t0) },
			func() { socket(s, traceID(1), spanID(2), spanID(0), "send x", "10.0.0.5", 40002, "10.1.0.9", 8080, t0) },
			func() {
				socket(s, traceID(1), spanID(3), spanID(0), "send x", "127.0.0.1", 40003, "127.0.0.1", 8080, t0)
			},
		}
		for i := range add {
			if rev {
				add[len(add)-1-i]()
			} else {
				add[i]()
			}
		}
		return b.td
	}
	a := newKeyer(10, 10, time.Minute).keys(build(false), map[string]int{})
	b := newKeyer(10, 10, time.Minute).keys(build(true), map[string]int{})
	if a[traceID(1)] != b[traceID(1)] || a[traceID(1)].key != "10.0.0.5" {
		t.Errorf("%+v vs %+v, want 10.0.0.5 both", a[traceID(1)], b[traceID(1)])
	}
}

// TestInboundQueueBounded: one accept sent again and again (a broken or hostile sender) does
// not grow what the keyer remembers.
func TestInboundQueueBounded(t *testing.T) {
	k := newKeyer(10, 10, time.Minute)
	for range 1000 {
		b, s := newBatch("node-b")
		socket(s, traceID(1), spanID(1), spanID(0), "accept", "10.1.0.9", 8080, "10.0.0.5", 40001, t0)
		k.keys(b.td, map[string]int{})
	}
	if k.inbound.QueueLen() > 3 || len(k.traceQueue) > 3 {
		t.Errorf("queues of %d and %d entries for one connection and one trace", k.inbound.QueueLen(), len(k.traceQueue))
	}
}
