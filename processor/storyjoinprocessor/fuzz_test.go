package storyjoinprocessor

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/internal/handoff"
)

// FuzzJoin feeds socket and accept spans whose addresses and ports come from the fuzzer (what a
// broken or hostile agent could send the gateway): no panic, and every span comes out exactly
// once, joined or not.
func FuzzJoin(f *testing.F) {
	f.Add("10.0.0.1", "40001", "10.0.0.2", "8080", "10.0.0.1", int64(40001), false)
	f.Add("127.0.0.1", "1", "::1", "65535", "127.0.0.1", int64(1), true)
	f.Add("fe80::1%eth0", "x", "999.1.1.1", "70000", "", int64(-5), false)
	f.Add("::ffff:10.0.0.1", "40001", "10.0.0.2", "08080", "10.0.0.1", int64(40001), true)
	f.Fuzz(func(t *testing.T, local, lport, peer, pport, acceptPeer string, acceptPort int64, serverFirst bool) {
		cfg := createDefaultConfig().(*Config)
		cfg.MaxPendingSpans = 16
		sink := new(consumertest.TracesSink)
		j, err := newJoiner(cfg, componenttest.NewNopTelemetrySettings(), sink)
		if err != nil {
			t.Fatal(err)
		}
		now := base
		j.now = func() time.Time { return now }

		client := newNode("node-a", "agent")
		s := client.span(tid(1), sid(2), sid(1), "send x", ptrace.SpanKindClient, 0, 50*ms)
		s.Attributes().PutStr("network.local.address", local)
		s.Attributes().PutStr("network.local.port", lport)
		s.Attributes().PutStr("network.peer.address", peer)
		s.Attributes().PutStr("network.peer.port", pport)
		server := newNode("node-b", "service")
		server.accept(tid(3), sid(3), acceptPeer, acceptPort, ms)
		io := server.span(tid(3), sid(4), sid(3), "receive y", ptrace.SpanKindClient, 2*ms, 3*ms)
		io.Attributes().PutStr("network.local.address", peer)
		io.Attributes().PutStr("network.local.port", pport)
		io.Attributes().PutStr("network.peer.address", acceptPeer)
		io.Attributes().PutInt("network.peer.port", acceptPort)

		batches := []ptrace.Traces{client.td, server.td}
		if serverFirst {
			batches[0], batches[1] = batches[1], batches[0]
		}
		total := 0
		var reqs []*request
		for _, td := range batches {
			req := &request{ack: handoff.New()}
			reqs = append(reqs, req)
			out, err := j.consume(context.WithValue(context.Background(), requestKey{}, req), td)
			if err == nil {
				total += out.SpanCount()
			}
			for _, a := range req.released {
				a.Done(nil) // passed on with this batch, as handoffProcessor does
			}
		}
		now = now.Add(cfg.Wait)
		if err := j.expire(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		for i, req := range reqs {
			// Every part it left waiting was passed on: only the caller's reference is left.
			if n := req.ack.Pending(); n != 1 {
				t.Fatalf("request %d: %d references, want 1 (the caller's)", i, n)
			}
		}
		total += sink.SpanCount()
		if total != 3 {
			t.Fatalf("%d spans came out of 3", total)
		}
		if j.pendingSpans != 0 || len(j.pending) != 0 {
			t.Fatalf("still waiting: %d spans", j.pendingSpans)
		}
	})
}
