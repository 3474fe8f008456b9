package storyrouteexporter

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// FuzzKeys runs the key extraction on spans whose names, kinds, addresses, ports, node and
// network namespace are arbitrary (what a broken or hostile sender could put there): it must
// not panic, every trace gets a key and a placement, keys stay bounded, and the same batch
// gives the same keys twice.
func FuzzKeys(f *testing.F) {
	f.Add("send x", int8(3), "10.0.0.5", int64(40001), "10.1.0.9", "8080", "node-a", int64(1), byte(1))
	f.Add("accept", int8(2), "10.1.0.9", int64(8080), "10.0.0.5", "40001", "node-b", int64(0), byte(2))
	f.Add("receive y", int8(3), "127.0.0.1", int64(80), "127.0.0.1", "50000", "", int64(-1), byte(0))
	f.Add("send z", int8(3), "fe80::1%eth0", int64(0), "::ffff:1.2.3.4", "99999999", "n", int64(7), byte(9))
	f.Add("accept", int8(2), "", int64(70000), "999.1.1.1", "-1", "x", int64(0), byte(3))
	f.Fuzz(func(t *testing.T, name string, kind int8, local string, localPort int64, peer, peerPort, node string, netns int64, tid byte) {
		build := func() ptrace.Traces {
			td := ptrace.NewTraces()
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("k8s.node.name", node)
			spans := rs.ScopeSpans().AppendEmpty().Spans()
			for i := range 3 {
				s := spans.AppendEmpty()
				s.SetTraceID(pcommon.TraceID{0: tid, 1: byte(i % 2)})
				s.SetSpanID(pcommon.SpanID{0: byte(i + 1)})
				s.SetName(name)
				s.SetKind(ptrace.SpanKind(kind))
				s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(i) * time.Millisecond)))
				a := s.Attributes()
				a.PutStr("network.local.address", local)
				a.PutInt("network.local.port", localPort+int64(i))
				a.PutStr("network.peer.address", peer)
				if i == 1 {
					a.PutInt("network.peer.port", localPort)
				} else {
					a.PutStr("network.peer.port", peerPort)
				}
				a.PutInt("agenttrail.netns", netns)
			}
			return td
		}
		r := newRing(sortedDistinct([]string{"a:1", "b:2", "c:3"}))
		k := newKeyer(4, 4, time.Minute)
		got := k.keys(build(), map[string]int{})
		again := newKeyer(4, 4, time.Minute).keys(build(), map[string]int{})
		if len(got) != 2 {
			t.Fatalf("keys of %d traces, want 2", len(got))
		}
		for id, rk := range got {
			if rk.key == "" || len(rk.key) > 253+1+20+1+64 {
				t.Fatalf("trace %s: key %q (%d bytes)", id, rk.key, len(rk.key))
			}
			if i := r.pick(rk.key); i < 0 || i > 2 {
				t.Fatalf("placed on %d", i)
			}
			if again[id] != rk {
				t.Fatalf("trace %s: %+v then %+v", id, rk, again[id])
			}
		}
		if len(k.traces) > 4 || k.inbound.Len() > 4 {
			t.Fatalf("bounds exceeded: %d traces, %d inbound", len(k.traces), k.inbound.Len())
		}
	})
}
