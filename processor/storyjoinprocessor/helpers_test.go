package storyjoinprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/componenttestkit"
	"github.com/agenttrail/agenttrail/internal/handoff"
	"github.com/agenttrail/agenttrail/internal/sockspan"
	"github.com/agenttrail/agenttrail/processor/storyjoinprocessor/internal/metadata"
)

var base = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// harness runs the processor through its factory with a clock the test moves; the expiry is
// driven by the test (expire), not the ticker, so every run is the same.
type harness struct {
	t    *testing.T
	p    processor.Traces
	j    *joiner
	now  time.Time
	sink *consumertest.TracesSink
	tel  *componenttest.Telemetry
	acks []*handoff.Ack // one per send: answered when all of it was passed on
}

func newHarness(t *testing.T, cfg *Config) *harness {
	t.Helper()
	return newHarnessLogged(t, cfg, nil)
}

// newHarnessLogged is newHarness with the processor's logger (nil: none).
func newHarnessLogged(t *testing.T, cfg *Config, logger *zap.Logger) *harness {
	t.Helper()
	require.NoError(t, cfg.Validate())
	h := &harness{t: t, now: base, sink: new(consumertest.TracesSink), tel: componenttest.NewTelemetry()}
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = h.tel.NewTelemetrySettings()
	if logger != nil {
		set.Logger = logger
	}
	j, err := newJoiner(cfg, set.TelemetrySettings, h.sink)
	require.NoError(t, err)
	j.now = func() time.Time { return h.now }
	h.j = j
	p, err := newTracesProcessor(context.Background(), set, cfg, h.sink, j)
	require.NoError(t, err)
	h.p = p
	t.Cleanup(func() {
		require.NoError(t, p.Shutdown(context.Background()))
		for i, a := range h.acks {
			require.Zero(t, a.Pending(), "request %d not answered after shutdown", i)
		}
		require.NoError(t, h.tel.Shutdown(context.Background()))
	})
	return h
}

// send hands td to the processor and returns once what goes on at once was passed on; the
// request's answer (waiting for what it left held) is kept in h.acks.
func (h *harness) send(td ptrace.Traces) *handoff.Ack {
	h.t.Helper()
	ack, err := h.p.(handoffProcessor).consume(context.Background(), td)
	require.NoError(h.t, err)
	ack.Done(nil) // the caller's reference, as Wait gives it up
	h.acks = append(h.acks, ack)
	return ack
}

// out takes everything the processor passed on so far, as one Traces.
func (h *harness) out() ptrace.Traces {
	out := ptrace.NewTraces()
	for _, td := range h.sink.AllTraces() {
		td.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
	}
	h.sink.Reset()
	return out
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	require.NoError(h.t, h.j.expire(context.Background(), false))
	h.j.sends.Wait() // expired traces are passed on from a goroutine of their own
}

func (h *harness) counter(name, key, value string) int64 {
	if key == "" {
		return componenttestkit.Int64Sums(h.t, h.tel, name)[""]
	}
	return componenttestkit.Int64Sums(h.t, h.tel, name, key)[value]
}

// spanBuilder writes one node's spans the way the receiver does.
type spanBuilder struct {
	td ptrace.Traces
	ss ptrace.ScopeSpans
}

func newNode(node, service string) *spanBuilder {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("host.name", node)
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("agenttrail.ebpf")
	return &spanBuilder{td: td, ss: ss}
}

func tid(b byte) pcommon.TraceID { return pcommon.TraceID{b, b, b, b, 1} }
func sid(b byte) pcommon.SpanID  { return pcommon.SpanID{b, b, 2} }

func (b *spanBuilder) span(trace pcommon.TraceID, id, parent pcommon.SpanID, name string, kind ptrace.SpanKind, start, end time.Duration) ptrace.Span {
	s := b.ss.Spans().AppendEmpty()
	s.SetTraceID(trace)
	s.SetSpanID(id)
	s.SetParentSpanID(parent)
	s.SetName(name)
	s.SetKind(kind)
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(start)))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(end)))
	return s
}

// socket writes a `send {peer}` aggregate: local and peer as this side saw them.
func (b *spanBuilder) socket(trace pcommon.TraceID, id, parent pcommon.SpanID, local, peer string, lport, pport int64, start, end time.Duration) ptrace.Span {
	s := b.span(trace, id, parent, "send "+peer, ptrace.SpanKindClient, start, end)
	a := s.Attributes()
	a.PutStr("network.peer.address", peer)
	a.PutInt("network.peer.port", pport)
	a.PutStr("network.local.address", local)
	a.PutInt("network.local.port", lport)
	a.PutInt("agenttrail.netns", 4026531840)
	return s
}

// accept writes an accept root: the client's address as the server saw it.
func (b *spanBuilder) accept(trace pcommon.TraceID, id pcommon.SpanID, peer string, pport int64, start time.Duration) ptrace.Span {
	s := b.span(trace, id, pcommon.SpanID{}, "accept", ptrace.SpanKindServer, start, start+time.Millisecond)
	s.Attributes().PutStr("network.peer.address", peer)
	s.Attributes().PutInt("network.peer.port", pport)
	return s
}

// spansByName indexes the spans of td by name (the tests use distinct names).
func spansByName(td ptrace.Traces) map[string]ptrace.Span {
	m := map[string]ptrace.Span{}
	sockspan.EachSpan(td, func(_ pcommon.Resource, s ptrace.Span) { m[s.Name()] = s })
	return m
}
