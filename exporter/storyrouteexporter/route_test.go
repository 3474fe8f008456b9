package storyrouteexporter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/sockspan"
	"github.com/agenttrail/agenttrail/internal/testutil"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor"
)

// replica is one gateway replica as the gateway runs it: a real OTLP/gRPC receiver on
// loopback, then the storyjoin processor, then a sink.
type replica struct {
	endpoint string
	sink     *consumertest.TracesSink
	recv     receiver.Traces
	join     processor.Traces
}

func startReplica(t *testing.T) *replica {
	t.Helper()
	r := &replica{endpoint: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)), sink: new(consumertest.TracesSink)}
	jf := storyjoinprocessor.NewFactory()
	jcfg := jf.CreateDefaultConfig()
	if err := confmap.NewFromStringMap(map[string]any{"wait": "300ms"}).Unmarshal(jcfg); err != nil {
		t.Fatal(err)
	}
	var err error
	r.join, err = jf.CreateTraces(context.Background(), processortest.NewNopSettings(jf.Type()), jcfg, r.sink)
	if err != nil {
		t.Fatal(err)
	}
	rf := otlpreceiver.NewFactory()
	rcfg := rf.CreateDefaultConfig()
	if err := confmap.NewFromStringMap(map[string]any{"protocols": map[string]any{"grpc": map[string]any{"endpoint": r.endpoint}}}).Unmarshal(rcfg); err != nil {
		t.Fatal(err)
	}
	r.recv, err = rf.CreateTraces(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, r.join)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.join.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := r.recv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *replica) stop(t *testing.T) {
	if r.recv == nil {
		return
	}
	if err := r.recv.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if err := r.join.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	r.recv = nil
}

// spansOf returns the trace id each span id arrived under at this replica.
func (r *replica) spansOf() map[pcommon.SpanID]pcommon.TraceID {
	out := map[pcommon.SpanID]pcommon.TraceID{}
	for _, td := range r.sink.AllTraces() {
		sockspan.EachSpan(td, func(_ pcommon.Resource, s ptrace.Span) { out[s.SpanID()] = s.TraceID() })
	}
	return out
}

func newTestExporter(t *testing.T, endpoints []string, mutate func(*Config)) (exporter.Traces, *routeExporter) {
	t.Helper()
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	if err := confmap.NewFromStringMap(map[string]any{
		"resolver": map[string]any{"static": map[string]any{"hostnames": endpoints}},
		"protocol": map[string]any{"otlp": map[string]any{"tls": map[string]any{"insecure": true}, "timeout": "2s"}},
		// The queue is tested by exporterhelper; here each ConsumeTraces is one routed request.
		"sending_queue":    map[string]any{"enabled": false},
		"retry_on_failure": map[string]any{"enabled": false},
	}).Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	exp, re, err := newTraces(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := exp.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return exp, re
}

// pair is one call across nodes: the agent's client half on node A (tool span and its send),
// the service's server half on node B (accept, file read), and the handler's trace of the same
// connection apart from its accept's.
type pair struct {
	client, server, handler pcommon.TraceID
	tool, send              pcommon.SpanID
	accept, read, recv      pcommon.SpanID
}

func makePairs(n int) ([]pair, ptrace.Traces, ptrace.Traces) {
	ca, cs := newBatch("node-a")
	sb, ss := newBatch("node-b")
	var pairs []pair
	for i := range n {
		b := byte(i)
		p := pair{
			client: pcommon.TraceID{0: 1, 15: b}, server: pcommon.TraceID{0: 2, 15: b}, handler: pcommon.TraceID{0: 3, 15: b},
			tool: pcommon.SpanID{0: 1, 7: b}, send: pcommon.SpanID{0: 2, 7: b},
			accept: pcommon.SpanID{0: 3, 7: b}, read: pcommon.SpanID{0: 4, 7: b}, recv: pcommon.SpanID{0: 5, 7: b},
		}
		at := t0.Add(time.Duration(i) * time.Second)
		client := fmt.Sprintf("10.0.%d.%d", i/200, 10+i%200) // one agent pod per pair
		port := int64(40000 + i)
		tool(cs, p.client, p.tool, at)
		socket(cs, p.client, p.send, p.tool, "send 10.96.0.10:80", client, port, "10.96.0.10", 80, at.Add(10*time.Millisecond))
		socket(ss, p.server, p.accept, pcommon.SpanID{}, "accept", "10.1.0.9", 8080, client, port, at.Add(20*time.Millisecond))
		plain(ss, p.server, p.read, at.Add(21*time.Millisecond))
		socket(ss, p.handler, p.recv, pcommon.SpanID{}, "receive "+client, "10.1.0.9", 8080, client, port, at.Add(22*time.Millisecond))
		pairs = append(pairs, p)
	}
	return pairs, ca.td, sb.td
}

// TestRouteJoinsOnOneReplica: two real OTLP receivers, each in front of a storyjoin processor,
// are the replicas. The agents' batches (node A's client halves, node B's server halves, in
// separate requests, server first) go through the exporter: every pair lands on one replica,
// where storyjoin joins the server's trace (accept and handler) under the client's tool span.
// Routing by trace id, as contrib's loadbalancing exporter does, would split some of them:
// checked below, so the test is not one that passes whatever the key.
func TestRouteJoinsOnOneReplica(t *testing.T) {
	r1, r2 := startReplica(t), startReplica(t)
	exp, _ := newTestExporter(t, []string{r1.endpoint, r2.endpoint}, nil)
	pairs, client, server := makePairs(24)
	// The two nodes' agents send at once, as they do: the gateway may answer a request of
	// server halves only once they were passed on (joined, or after storyjoin's wait).
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { errs <- exp.ConsumeTraces(ctx, server) }()
	time.Sleep(50 * time.Millisecond) // the server halves first: they wait for their clients
	go func() { errs <- exp.ConsumeTraces(ctx, client) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := 24 * 5
	deadline := time.Now().Add(10 * time.Second)
	for r1.sink.SpanCount()+r2.sink.SpanCount() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := r1.sink.SpanCount() + r2.sink.SpanCount(); got != want {
		t.Fatalf("replicas got %d spans, want %d", got, want)
	}
	if r1.sink.SpanCount() == 0 || r2.sink.SpanCount() == 0 {
		t.Errorf("one replica got everything (%d / %d spans): keys are not spread", r1.sink.SpanCount(), r2.sink.SpanCount())
	}
	a, b := r1.spansOf(), r2.spansOf()
	for i, p := range pairs {
		at := a
		if _, ok := a[p.tool]; !ok {
			at = b
		}
		for _, s := range []pcommon.SpanID{p.tool, p.send, p.accept, p.read, p.recv} {
			tid, ok := at[s]
			if !ok {
				t.Errorf("pair %d: span %s not on the client's replica", i, s)
				continue
			}
			if tid != p.client {
				t.Errorf("pair %d: span %s in trace %s, want the client's %s (joined)", i, s, tid, p.client)
			}
		}
	}

	// The same traces routed by trace id split pairs between the replicas.
	rg := newRing(sortedDistinct([]string{r1.endpoint, r2.endpoint}))
	split := 0
	for _, p := range pairs {
		if rg.pick(traceIDKey(p.client)) != rg.pick(traceIDKey(p.server)) {
			split++
		}
	}
	if split == 0 {
		t.Error("routing by trace id would keep every pair together: the test shows nothing")
	}
}

// TestReplicaDownRetriesItsPartOnly: with one replica down, the other's part is delivered and
// only the dead replica's part comes back in the error (exporterhelper retries just that).
// When the dead replica leaves the list, the retry goes to the replica that took over its keys.
func TestReplicaDownRetriesItsPartOnly(t *testing.T) {
	live := startReplica(t)
	dead := startReplica(t)
	dead.stop(t)
	exp, re := newTestExporter(t, []string{live.endpoint, dead.endpoint}, func(c *Config) {
		c.TimeoutConfig.Timeout = 500 * time.Millisecond
	})
	_, client, _ := makePairs(24)
	total := client.SpanCount()
	err := exp.ConsumeTraces(context.Background(), client)
	var te consumererror.Traces
	if !errors.As(err, &te) || consumererror.IsPermanent(err) {
		t.Fatalf("error %v, want a retryable consumererror.Traces", err)
	}
	failed := te.Data().SpanCount()
	if failed == 0 || failed == total {
		t.Fatalf("%d of %d spans handed back, want the dead replica's part only", failed, total)
	}
	deadline := time.Now().Add(5 * time.Second)
	for live.sink.SpanCount() < total-failed && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := live.sink.SpanCount(); got != total-failed {
		t.Errorf("live replica got %d spans, want %d", got, total-failed)
	}

	// The dead replica goes away (its pod rescheduled); the retry of its part is routed again.
	re.setEndpoints([]string{live.endpoint})
	if err := exp.ConsumeTraces(context.Background(), te.Data()); err != nil {
		t.Fatalf("retry after the replica left: %v", err)
	}
	for live.sink.SpanCount() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := live.sink.SpanCount(); got != total {
		t.Errorf("live replica got %d spans after the retry, want all %d", got, total)
	}
}

// TestNoReplicaIsRetryable: before any replica is known, the data goes back retryable, whole.
func TestNoReplicaIsRetryable(t *testing.T) {
	exp, re := newTestExporter(t, []string{"127.0.0.1:1"}, nil)
	re.setEndpoints(nil)
	_, client, _ := makePairs(2)
	err := exp.ConsumeTraces(context.Background(), client)
	var te consumererror.Traces
	if !errors.As(err, &te) || consumererror.IsPermanent(err) || te.Data().SpanCount() != client.SpanCount() {
		t.Fatalf("error %v, want retryable with every span", err)
	}
}
